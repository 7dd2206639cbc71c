package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// The bench protocol. A client connection carries any number of requests,
// each starting with one opcode byte:
//
//	'D' n (8 bytes, big endian): the server sends n bytes of the pattern
//	'U' n: the client sends n bytes; the server answers 'u' once it has them all
//	'P': the server answers 'p' (one small request/response)
const (
	opDownload = 'D'
	opUpload   = 'U'
	opPing     = 'P'
)

// chunk is the read and write size of the server and of the bulk client.
const chunk = 128 << 10

// patternPeriod is prime, so the pattern does not line up with any buffer
// size and a dropped or repeated chunk shows.
const patternPeriod = 251

// pattern holds chunk bytes of the pattern from every offset modulo
// patternPeriod: pattern[off%patternPeriod:][:n] is the stream at off.
var pattern = func() []byte {
	p := make([]byte, chunk+patternPeriod)
	for i := range p {
		p[i] = byte(i % patternPeriod)
	}
	return p
}()

func patternAt(off int64, n int) []byte {
	o := int(off % patternPeriod)
	return pattern[o : o+n]
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}

// Server serves the bench protocol and counts what it carried. The same
// code serves raw loopback and the tailnet.
type Server struct {
	Accepted atomic.Int64 // connections accepted
	Sent     atomic.Int64 // download payload bytes written
	Received atomic.Int64 // upload payload bytes read
}

// Serve accepts on ln until it is closed.
func (s *Server) Serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.Accepted.Add(1)
		go s.Handle(c)
	}
}

// Handle serves one connection until EOF or an error.
func (s *Server) Handle(c net.Conn) {
	defer c.Close()
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(c, hdr[:1]); err != nil {
			return
		}
		switch hdr[0] {
		case opPing:
			if _, err := c.Write([]byte{'p'}); err != nil {
				return
			}
		case opDownload:
			if _, err := io.ReadFull(c, hdr[1:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint64(hdr[1:]))
			for off := int64(0); off < n; {
				m := int(min(n-off, chunk))
				w, err := c.Write(patternAt(off, m))
				off += int64(w)
				s.Sent.Add(int64(w))
				if err != nil {
					return
				}
			}
		case opUpload:
			if _, err := io.ReadFull(c, hdr[1:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint64(hdr[1:]))
			bp := bufPool.Get().(*[]byte)
			got, err := io.CopyBuffer(discard{}, io.LimitReader(c, n), *bp)
			bufPool.Put(bp)
			s.Received.Add(got)
			if err != nil || got != n {
				return
			}
			if _, err := c.Write([]byte{'u'}); err != nil {
				return
			}
		default:
			return
		}
	}
}

// discard is io.Discard without ReadFrom, so CopyBuffer uses our buffer
// (io.Discard's ReadFrom reads in 8 KiB pieces).
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ping sends one small request and waits for its answer.
func ping(c net.Conn) error {
	if _, err := c.Write([]byte{opPing}); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[0] != 'p' {
		return fmt.Errorf("bench: ping answered %q", b[0])
	}
	return nil
}

// download asks for n bytes and reads them, checking the pattern if
// verify is set. It returns how many bytes arrived.
func download(c net.Conn, n int64, verify bool) (int64, error) {
	var hdr [9]byte
	hdr[0] = opDownload
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		return 0, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var got int64
	for got < n {
		m, err := c.Read(buf[:min(int64(len(buf)), n-got)])
		if m > 0 && verify {
			if !bytes.Equal(buf[:m], patternAt(got, m)) {
				return got, fmt.Errorf("bench: download corrupted in the %d bytes at offset %d", m, got)
			}
		}
		got += int64(m)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return got, err
		}
	}
	return got, nil
}

// upload sends n bytes of the pattern and waits for the server to confirm
// it read them all.
func upload(c net.Conn, n int64) error {
	var hdr [9]byte
	hdr[0] = opUpload
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	for off := int64(0); off < n; {
		m := int(min(n-off, chunk))
		w, err := c.Write(patternAt(off, m))
		off += int64(w)
		if err != nil {
			return err
		}
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("bench: waiting for the upload receipt: %w", err)
	}
	if b[0] != 'u' {
		return fmt.Errorf("bench: upload answered %q", b[0])
	}
	return nil
}
