package vhost

import (
	"crypto/tls"
	"testing"
)

// BenchmarkFeed is the per-connection cost of the inspection (a TLS
// ClientHello from crypto/tls's client; an HTTP/1.1 request head as curl
// sends it) and the per-Read cost once a tunnel passes (32 KiB reads).
func BenchmarkFeed(b *testing.B) {
	hello := clientHello(b, &tls.Config{ServerName: "a.example"})
	head := []byte("GET /index.html HTTP/1.1\r\nHost: a.example\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
	for _, bc := range []struct {
		name string
		in   []byte
	}{{"clienthello", hello}, {"http-head", head}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(Options{Check: allowA}).Feed(bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("bulk-32k", func(b *testing.B) {
		s := New(Options{Check: allowA})
		s.Feed(hello)
		p := make([]byte, 32<<10)
		b.SetBytes(int64(len(p)))
		b.ReportAllocs()
		for b.Loop() {
			s.Feed(p)
		}
	})
}
