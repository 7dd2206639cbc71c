package socks

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/proxy"
)

const benchChunk = 1 << 20

// sink reads until EOF, then reports the byte count back as one byte per
// MiB so the writer knows everything arrived.
func sink(c net.Conn) {
	n, _ := io.Copy(io.Discard, c)
	c.Write([]byte{byte(n / benchChunk)})
}

// benchUpload writes b.N MiB into c and waits for the sink to confirm.
func benchUpload(b *testing.B, c net.Conn) {
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if int(ack[0]) != b.N%256 {
		b.Fatalf("sink got %d MiB (mod 256), want %d", ack[0], b.N%256)
	}
}

// BenchmarkLoopbackBaseline is the same upload without the proxy.
func BenchmarkLoopbackBaseline(b *testing.B) {
	ts := newTCPServer(b, sink)
	c, err := net.Dial("tcp", ts.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchUpload(b, c)
}

func BenchmarkSOCKS5Throughput(b *testing.B) {
	fn := newFakeNet()
	ts := newTCPServer(b, sink)
	fn.add("sink.test", ts.addr())
	s := startProxy(b, fn, Config{})
	d, err := proxy.SOCKS5("tcp", s.Addr().String(), nil, proxy.Direct)
	if err != nil {
		b.Fatal(err)
	}
	c, err := d.Dial("tcp", "sink.test:9")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchUpload(b, c)
}

func BenchmarkHTTPConnectThroughput(b *testing.B) {
	fn := newFakeNet()
	ts := newTCPServer(b, sink)
	fn.add("sink.test", ts.addr())
	s := startProxy(b, fn, Config{})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT sink.test:9 HTTP/1.1\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || res.StatusCode != 200 || br.Buffered() != 0 {
		b.Fatalf("CONNECT: %v %v", res, err)
	}
	benchUpload(b, c)
}

// BenchmarkSOCKS5Connect measures opening and closing one tunnel.
func BenchmarkSOCKS5Connect(b *testing.B) {
	fn := newFakeNet()
	ts := newTCPServer(b, echo)
	fn.add("echo.test", ts.addr())
	s := startProxy(b, fn, Config{})
	d, _ := proxy.SOCKS5("tcp", s.Addr().String(), nil, proxy.Direct)
	b.ResetTimer()
	for range b.N {
		c, err := d.Dial("tcp", "echo.test:7")
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
