package socks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	socks5 "github.com/armon/go-socks5"
)

// Why not socks5.Server.ServeConn: it resolves a requested name with its
// Resolver before consulting Rules and then dials the IP; it maps dial errors
// to reply codes by matching error strings (so a policy denial from Dial, a
// timeout or an unreachable host all come out as 0x04 or worse); it cannot
// clear the handshake deadline before the tunnel starts; and it has no way to
// end its tunnels. So only its parts that are right are used here: the
// Authenticators (RFC 1929 sub-negotiation) and NewRequest (request parsing).
// The greeting, replies and CONNECT are ours.

var errTooManyConns = errors.New("too many connections (Config.MaxConns); try again later")

// serveSOCKS5 serves one SOCKS5 client connection, whose first byte (0x05)
// is buffered in cc.br. The handshake deadline is already set on cc.
func (s *Server) serveSOCKS5(cc *clientConn) {
	rec := s.newRecord(cc, "socks5", cc.start)
	defer s.finish(rec)
	br := cc.br

	// Greeting: VER NMETHODS METHODS...
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		rec.fail(fmt.Errorf("reading SOCKS5 greeting: %w", err))
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		rec.fail(fmt.Errorf("reading SOCKS5 greeting: %w", err))
		return
	}
	var auth socks5.Authenticator = socks5.NoAuthAuthenticator{}
	if s.auth {
		auth = socks5.UserPassAuthenticator{Credentials: s.creds}
	}
	if !bytes.Contains(methods, []byte{auth.GetCode()}) {
		cc.Write([]byte{5, 0xff}) // no acceptable methods
		if s.auth {
			rec.deny(ruleProxyAuth, reasonProxyAuth, errors.New("client did not offer username/password authentication, which this proxy requires"))
		} else {
			rec.fail(errors.New("client did not offer the no-authentication method"))
		}
		return
	}
	if _, err := auth.Authenticate(br, cc); err != nil {
		if errors.Is(err, socks5.UserAuthFailed) {
			rec.deny(ruleProxyAuth, reasonProxyAuth, errors.New("wrong proxy username or password"))
		} else {
			rec.fail(fmt.Errorf("SOCKS5 authentication: %w", err))
		}
		return
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT. Check the version and
	// address type first: NewRequest reports an unknown one with an
	// unexported error.
	h, err := br.Peek(4)
	if err != nil {
		rec.fail(fmt.Errorf("reading SOCKS5 request: %w", err))
		return
	}
	if h[0] != 5 {
		rec.fail(fmt.Errorf("SOCKS5 request has version %d", h[0]))
		return
	}
	switch h[3] {
	case 1, 3, 4: // IPv4, domain name, IPv6
	default:
		writeReply(cc, repAddrTypeUnsupported, nil)
		rec.fail(fmt.Errorf("SOCKS5 address type %d not supported", h[3]))
		return
	}
	req, err := socks5.NewRequest(br)
	if err != nil {
		rec.fail(fmt.Errorf("reading SOCKS5 request: %w", err))
		return
	}
	cc.idleSince.Store(0) // a request in progress: no longer evictable
	host := req.DestAddr.FQDN
	if host == "" && req.DestAddr.IP != nil {
		host = req.DestAddr.IP.String()
	}
	rec.Host, rec.Port = host, uint16(req.DestAddr.Port)
	if req.Command != socks5.ConnectCommand {
		// BIND and UDP ASSOCIATE would open doors policy cannot see.
		writeReply(cc, repCommandNotSupported, nil)
		rec.fail(fmt.Errorf("SOCKS5 command %s not supported; only CONNECT is", commandName(req.Command)))
		return
	}
	if cc.refusing != nil {
		writeReply(cc, repGeneralFailure, nil)
		rec.fail(cc.refusing)
		return
	}
	if req.DestAddr.Port == 0 {
		writeReply(cc, repGeneralFailure, nil)
		rec.fail(errors.New("port 0 requested"))
		return
	}
	cc.SetDeadline(time.Time{})

	target, err := s.open(s.ctx, rec, host, uint16(req.DestAddr.Port))
	if err != nil {
		writeReply(cc, socksReply(err), nil)
		var pe *policyError
		if errors.As(err, &pe) {
			rec.denyPolicy(pe)
		} else {
			rec.fail(err)
		}
		return
	}
	defer target.Close()
	rec.allow()
	if err := writeReply(cc, repSucceeded, target.LocalAddr()); err != nil {
		rec.setError(err)
		return
	}
	s.splice(cc, nil, target, rec)
}

// writeReply writes a SOCKS5 reply. bound is reported as BND.ADDR and
// BND.PORT when it is an IP address; otherwise 0.0.0.0:0.
func writeReply(w io.Writer, code byte, bound net.Addr) error {
	var ap netip.AddrPort
	if bound != nil {
		ap, _ = netip.ParseAddrPort(bound.String())
	}
	msg := make([]byte, 0, 22)
	msg = append(msg, 5, code, 0)
	switch a := ap.Addr().Unmap(); {
	case a.Is6():
		msg = append(msg, 4)
		msg = append(msg, a.AsSlice()...)
	case a.Is4():
		msg = append(msg, 1)
		msg = append(msg, a.AsSlice()...)
	default:
		msg = append(msg, 1, 0, 0, 0, 0)
	}
	msg = append(msg, byte(ap.Port()>>8), byte(ap.Port()))
	_, err := w.Write(msg)
	return err
}

func commandName(c uint8) string {
	switch c {
	case socks5.BindCommand:
		return "BIND"
	case socks5.AssociateCommand:
		return "UDP ASSOCIATE"
	}
	return fmt.Sprintf("0x%02x", c)
}

// refuseSOCKS4 answers a SOCKS4 or 4a client with "request rejected"
// (0x5B) and disconnects.
func (s *Server) refuseSOCKS4(cc *clientConn) {
	rec := s.newRecord(cc, "socks4", cc.start)
	rec.fail(errors.New("SOCKS4 is not supported; use SOCKS5 (e.g. curl --socks5-hostname)"))
	cc.Write([]byte{0, 0x5b, 0, 0, 0, 0, 0, 0})
	lingerClose(cc)
	s.finish(rec)
}

// lingerClose half-closes c and discards what the client still sends for a
// moment, so that a refusal is read rather than lost to a TCP reset.
func lingerClose(cc *clientConn) {
	cc.CloseWrite()
	cc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(cc, 64<<10))
	cc.Close()
}
