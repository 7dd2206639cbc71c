package vhost

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"time"
)

const (
	recordHeader    = 5
	maxRecord       = 16384 + 256 // TLSPlaintext's limit, and some slack
	extensionECH    = 0xfe0d      // encrypted_client_hello
	handshakeHello  = 1           // client_hello
	handshakeHeader = 4
)

// clientHello waits for the records that carry the whole ClientHello,
// then has crypto/tls parse it and checks its SNI.
func (s *Stream) clientHello(b []byte) (int, *Denial) {
	var msg []byte // the handshake bytes so far
	used := 0
	for {
		if len(b)-used < recordHeader {
			return 0, nil
		}
		h := b[used : used+recordHeader]
		n := int(h[3])<<8 | int(h[4])
		if h[0] != 0x16 || h[1] != 3 || n == 0 || n > maxRecord {
			return 0, s.deny("", "malformed TLS record before the ClientHello", false)
		}
		if len(b)-used-recordHeader < n {
			return 0, nil
		}
		msg = append(msg, b[used+recordHeader:used+recordHeader+n]...)
		used += recordHeader + n
		if len(msg) < handshakeHeader {
			continue
		}
		if msg[0] != handshakeHello {
			return 0, s.deny("", "the first TLS handshake message is not a ClientHello", false)
		}
		size := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if size > s.o.MaxHold {
			return 0, s.deny("", "ClientHello larger than the inspection limit", false)
		}
		if len(msg) >= handshakeHeader+size {
			break
		}
	}
	info, err := parseClientHello(b[:used])
	if err != nil {
		return 0, s.deny("", "malformed ClientHello: "+err.Error(), false)
	}
	if !s.o.AllowECH && slices.Contains(info.Extensions, extensionECH) {
		return 0, s.deny(info.ServerName, "encrypted ClientHello (ECH) hides the name it is for", false)
	}
	switch {
	case info.ServerName != "":
		if d := s.check(info.ServerName); d != nil {
			return 0, d
		}
	case s.o.RequireName:
		return 0, s.deny("", "no SNI in the ClientHello", true)
	}
	// Past the ClientHello everything is encrypted, or the server's to
	// refuse.
	s.st = stPass
	return len(b), nil
}

var errGotHello = errors.New("got ClientHello")

// parseClientHello has crypto/tls read the ClientHello in records, a
// complete one, and report it through GetConfigForClient.
func parseClientHello(records []byte) (*tls.ClientHelloInfo, error) {
	var info *tls.ClientHelloInfo
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		info = h
		return nil, errGotHello
	}}
	err := tls.Server(&replayConn{r: records}, cfg).HandshakeContext(context.Background())
	if info != nil {
		return info, nil
	}
	if err == nil {
		err = errors.New("no ClientHello") // cannot happen: there is no certificate
	}
	return nil, err
}

// replayConn is a net.Conn that reads r and discards what is written.
type replayConn struct{ r []byte }

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.r) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.r)
	c.r = c.r[n:]
	return n, nil
}

func (c *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return replayAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return replayAddr{} }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }

type replayAddr struct{}

func (replayAddr) Network() string { return "tcp" }
func (replayAddr) String() string  { return "client" }
