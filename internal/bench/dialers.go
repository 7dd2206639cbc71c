package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Dialer opens a connection to the bench server, through whatever the
// column measures. The time it takes is part of new-connection latency.
type Dialer func(ctx context.Context) (net.Conn, error)

var netDialer net.Dialer

// tcpDialer dials addr directly: raw loopback.
func tcpDialer(addr string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		return netDialer.DialContext(ctx, "tcp", addr)
	}
}

// socks5Dialer asks the SOCKS5 proxy at proxy to CONNECT to target
// ("host:port", the host sent as a name, so the proxy resolves it), the way
// curl --socks5-hostname does: greeting, method choice, then the request.
func socks5Dialer(proxy, target string) Dialer {
	host, portStr, err := net.SplitHostPort(target)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || len(host) > 255 {
		panic(fmt.Sprintf("bench: bad target %q", target))
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = append(req, byte(port>>8), byte(port))
	return func(ctx context.Context) (net.Conn, error) {
		c, err := netDialer.DialContext(ctx, "tcp", proxy)
		if err != nil {
			return nil, err
		}
		if err := handshake(ctx, c, func() error { return socks5Connect(c, req) }); err != nil {
			c.Close()
			return nil, fmt.Errorf("bench: SOCKS5 via %s: %w", proxy, err)
		}
		return c, nil
	}
}

func socks5Connect(c net.Conn, req []byte) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil { // version 5, one method: no auth
		return err
	}
	var b [4]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return err
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("method selection %x", b[:2])
	}
	if _, err := c.Write(req); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return err
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("CONNECT refused: reply code %d", b[1])
	}
	var skip int
	switch b[3] {
	case 1:
		skip = 4 + 2
	case 4:
		skip = 16 + 2
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return err
		}
		skip = int(b[0]) + 2
	default:
		return fmt.Errorf("reply address type %d", b[3])
	}
	_, err := io.ReadFull(c, make([]byte, skip))
	return err
}

// connectDialer opens an HTTP CONNECT tunnel to target through the HTTP
// proxy at proxy.
func connectDialer(proxy, target string) Dialer {
	req := []byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	return func(ctx context.Context) (net.Conn, error) {
		c, err := netDialer.DialContext(ctx, "tcp", proxy)
		if err != nil {
			return nil, err
		}
		var br *bufio.Reader
		err = handshake(ctx, c, func() error {
			if _, err := c.Write(req); err != nil {
				return err
			}
			br = bufio.NewReaderSize(c, 512)
			tp := textproto.NewReader(br)
			line, err := tp.ReadLine()
			if err != nil {
				return err
			}
			if _, err := tp.ReadMIMEHeader(); err != nil {
				return err
			}
			if f := strings.Fields(line); len(f) < 2 || f[1] != "200" {
				return fmt.Errorf("CONNECT answered %q", line)
			}
			return nil
		})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("bench: HTTP CONNECT via %s: %w", proxy, err)
		}
		if br.Buffered() == 0 {
			return c, nil // the usual case: nothing read past the header
		}
		return &bufferedConn{Conn: c, br: br}, nil
	}
}

// handshake runs f with ctx's deadline on c, then clears it.
func handshake(ctx context.Context, c net.Conn, f func() error) error {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err := f()
	if !stop() && err != nil {
		err = errors.Join(ctx.Err(), err)
	}
	c.SetDeadline(time.Time{})
	return err
}

// bufferedConn reads first what the CONNECT response reader buffered.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}
