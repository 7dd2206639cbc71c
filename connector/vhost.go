package connector

// The check inside tunnels. A reverse proxy (nginx, Caddy, Traefik, an
// ingress) serves many names on one address and routes by TLS SNI and
// HTTP Host, so a tunnel allowed to one name would otherwise reach them
// all. A tunnel the proxy or a forward opens to an allowed name is
// dialed as before; then what the client sends first passes through
// internal/vhost before any of it is written to the target: a ClientHello
// whose SNI, or an HTTP request whose Host, names another host is refused
// — the client gets a TLS alert or a 403, the target a closed connection
// that carried none of the refused bytes, the audit log a deny record
// with the name seen.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/vhost"
	"github.com/tsconnect/tsconnect/socks"
)

// TunnelPolicy configures the check of the names inside tunnels
// (Config.Tunnels). The zero value checks: a tunnel opened to a name by
// the proxy (SOCKS5 or HTTP CONNECT) or a forward carries TLS only with
// that name's SNI, or none, and HTTP/1.x only with requests whose Host
// (and absolute URL) is that name, and HTTP/2 without TLS (h2c, as gRPC
// speaks it in plaintext) only with requests whose :authority is; an
// encrypted ClientHello (ECH) is refused, since the name it is for cannot
// be seen; other protocols pass untouched. A tunnel to an IP
// address allowed by a CIDR rule may carry any name the allowlist allows
// on its port. Connector.Dial and HTTPClient are not inspected (their
// caller is the program itself), nor is anything when there is no
// allowlist.
type TunnelPolicy struct {
	// Opaque turns the check off: tunnels carry whatever the client sends,
	// as before this check existed. A policy rule's "opaque" does the same
	// for the tunnels that rule allows.
	Opaque bool

	// SameAddress also lets a tunnel carry another name the allowlist
	// allows on the same port, when that name resolves to the address the
	// tunnel reached (two allowed vhosts behind one reverse proxy).
	SameAddress bool

	// RequireName refuses a ClientHello without an SNI and an HTTP request
	// without a Host (HTTP/1.0, 0.9): a reverse proxy sends those to its
	// default vhost.
	RequireName bool

	// AllowECH lets an encrypted ClientHello through, its outer SNI
	// checked (Chromium sends a GREASE one to every server).
	AllowECH bool
}

// A tunnelRefusal is the check's answer for a name it refuses.
type tunnelRefusal struct {
	rule   string // the deny rule, or ""
	reason string
}

func (e *tunnelRefusal) Error() string { return e.reason }

// inspect wraps fc, a tunnel on port that d allowed (d.Host: canonical),
// in the check, unless it is off for it. forward: the client is a local
// forward's, which names localhost or a loopback address for want of the
// real name.
func (c *Connector) inspect(fc *flowConn, d dnsfilter.Decision, port uint16, forward bool) net.Conn {
	tp := c.cfg.Tunnels
	if tp.Opaque || c.cfg.Allow.Empty() || d.Opaque {
		return fc
	}
	host := d.Host
	ic := &inspectConn{flowConn: fc, clientDone: make(chan struct{}), denied: make(chan struct{})}
	_, ipErr := netip.ParseAddr(host)
	dialed := netip.Addr{}
	if ap, err := netip.ParseAddrPort(fc.RemoteAddr().String()); err == nil {
		dialed = ap.Addr().Unmap()
	}
	ic.s = vhost.New(vhost.Options{
		RequireName: tp.RequireName,
		AllowECH:    tp.AllowECH,
		Check: func(name string) error {
			return c.checkInside(name, host, port, ipErr == nil, dialed, forward)
		},
	})
	return ic
}

// checkInside decides a name seen inside a tunnel to host:port.
func (c *Connector) checkInside(name, host string, port uint16, toIP bool, dialed netip.Addr, forward bool) error {
	if forward && isLoopbackName(name) {
		return nil // the forward's own address: the client knows no other
	}
	d := c.Check(name, port)
	if d.Allow && d.Host == host {
		return nil
	}
	if !d.Allow {
		seen := d.Host
		if seen == "" {
			seen = name
		}
		return &tunnelRefusal{rule: d.Rule, reason: fmt.Sprintf("the tunnel is for %s; %s is not allowed (%s)", host, seen, d.Reason)}
	}
	if toIP {
		return nil // an address allowed by a CIDR rule: any allowed name
	}
	if c.cfg.Tunnels.SameAddress && dialed.IsValid() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := c.Resolve(ctx, d.Host)
		cancel()
		if err == nil {
			for _, ip := range ips {
				if ip.Unmap() == dialed {
					return nil
				}
			}
		}
	}
	return &tunnelRefusal{reason: fmt.Sprintf("the tunnel is for %s, not %s: open a tunnel to %s itself", host, d.Host, d.Host)}
}

// isLoopbackName reports whether name is localhost or a loopback address.
func isLoopbackName(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(name)
	return err == nil && ip.Unmap().IsLoopback()
}

// lingerAfterDenial bounds how long a refused tunnel waits, after its
// reply, for the client to close; and how long the target of a tunnel
// refused in mid-stream (a second request) has to finish answering the
// requests before it.
const lingerAfterDenial = 5 * time.Second

// inspectConn is a tunnel's target connection with the check on what the
// client writes. Writes go through the vhost.Stream; once it passes, they
// go straight to the flowConn. On a denial, the target gets nothing more
// (and is closed, or half-closed if earlier requests were forwarded), and
// Read hands the proxy the target's remaining answer, then the denial's
// reply, then EOF once the client has closed its side (or an error after
// lingerAfterDenial, which makes the splice close the client).
type inspectConn struct {
	*flowConn

	// Write's alone: the stream (nil once it passes or is refused),
	// whether it was refused, and whether bytes were forwarded (so the
	// target may still be answering).
	s              *vhost.Stream
	refused, wrote bool

	denied     chan struct{} // closed on a denial; reply is set before
	reply      []byte        // what Read returns after the target's end
	clientDone chan struct{} // closed by CloseWrite or Close
	doneOnce   sync.Once
}

func (ic *inspectConn) Write(p []byte) (int, error) {
	switch {
	case ic.refused:
		return len(p), nil // discarded
	case ic.s == nil:
		return ic.flowConn.Write(p)
	}
	out, err := ic.s.Feed(p)
	if len(out) > 0 {
		if _, werr := ic.flowConn.Write(out); werr != nil {
			return 0, werr
		}
		ic.wrote = true
	}
	var d *vhost.Denial
	switch {
	case errors.As(err, &d):
		ic.s, ic.refused = nil, true
		ic.deny(d)
	case ic.s.Passthrough():
		ic.s = nil
	}
	return len(p), nil
}

// deny records d in the audit record and ends the target's part.
func (ic *inspectConn) deny(d *vhost.Denial) {
	fc := ic.flowConn
	fc.mu.Lock()
	rec := &fc.rec
	rec.Decision, rec.Reason, rec.Rule = socks.DecisionDeny, d.Reason, ""
	if tr := (*tunnelRefusal)(nil); errors.As(d.Cause, &tr) {
		rec.Rule = tr.rule
	}
	rec.Error = "refused inside the tunnel: " + d.Error()
	switch d.Proto {
	case vhost.ProtoTLS:
		rec.SNI = d.Name
	case vhost.ProtoHTTP, vhost.ProtoH2C:
		rec.HTTPHost = d.Name
	}
	fc.mu.Unlock()
	ic.reply = d.Reply
	close(ic.denied)
	if !ic.wrote {
		fc.Close()
		return
	}
	fc.CloseWrite()
	time.AfterFunc(lingerAfterDenial, func() { fc.Close() })
}

func (ic *inspectConn) Read(p []byte) (int, error) {
	select {
	case <-ic.denied:
		if ic.isClosed() {
			return ic.readReply(p)
		}
	default:
	}
	n, err := ic.flowConn.Read(p)
	if err != nil {
		select {
		case <-ic.denied:
			if n > 0 {
				return n, nil
			}
			ic.flowConn.Close()
			return ic.readReply(p)
		default:
		}
	}
	return n, err
}

// readReply returns the denial's reply, then waits for the client's end.
func (ic *inspectConn) readReply(p []byte) (int, error) {
	if len(ic.reply) > 0 {
		n := copy(p, ic.reply)
		ic.reply = ic.reply[n:]
		return n, nil
	}
	select {
	case <-ic.clientDone:
		return 0, io.EOF
	case <-time.After(lingerAfterDenial):
		return 0, errors.New("refused inside the tunnel; the client did not close")
	}
}

func (ic *inspectConn) CloseWrite() error {
	select {
	case <-ic.denied:
		ic.doneOnce.Do(func() { close(ic.clientDone) })
		return nil
	default:
		return ic.flowConn.CloseWrite()
	}
}

func (ic *inspectConn) Close() error {
	ic.doneOnce.Do(func() { close(ic.clientDone) })
	return ic.flowConn.Close()
}
