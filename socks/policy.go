package socks

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"github.com/tsconnect/tsconnect/dnsfilter"
)

// errBadHost reports a request target with no plausible host at all (a
// userinfo, a path, an unterminated bracket in a CONNECT target); it never
// reaches Check or Dial. It is a denial, like any other name the allowlist
// does not allow (SOCKS5 0x02, HTTP 403).
var errBadHost = errors.New("malformed name: not a host (a userinfo, path or bracket in the target)")

// policyError is a denial by Check or Dial, or of a malformed host.
type policyError struct {
	target string // host:port as checked
	rule   string // "" if the error did not name one
	reason string // short reason, "" if the error did not give one
	err    error
}

func newPolicyError(target string, err error) *policyError {
	pe := &policyError{target: target, err: err}
	pe.rule, pe.reason, _ = DenialOf(err)
	if err == errBadHost {
		pe.reason = errBadHost.Error()
	}
	return pe
}

func (e *policyError) Error() string {
	switch {
	case e.rule != "":
		return fmt.Sprintf("%q not allowed by allowlist rule: %s", e.target, e.rule)
	case e.reason != "":
		return fmt.Sprintf("%q not allowed: %s", e.target, e.reason)
	}
	return fmt.Sprintf("%q not allowed: %v", e.target, e.err)
}

func (e *policyError) Unwrap() error { return e.err }

// DenialOf reports whether err is a policy denial (see [Denial]) and, if
// so, the rule that decided and the short reason, either "" when the
// error gives none.
func DenialOf(err error) (rule, reason string, denied bool) {
	var d Denial
	if !errors.As(err, &d) || !d.Denied() {
		return "", "", false
	}
	if r, ok := d.(interface{ DenialReason() string }); ok {
		reason = r.DenialReason()
	}
	return d.RuleName(), reason, true
}

// isDenial reports whether err is a policy denial.
func isDenial(err error) bool {
	_, _, denied := DenialOf(err)
	return denied
}

// malformedError denies a host that dnsfilter.Malformed refuses: the one
// definition of a well-formed destination.
type malformedError struct{ reason string }

func (e *malformedError) Error() string        { return e.reason }
func (e *malformedError) Denied() bool         { return true }
func (e *malformedError) RuleName() string     { return "" }
func (e *malformedError) DenialReason() string { return e.reason }

// checkHost returns nil if host is a well-formed destination, else the
// denial saying why.
func checkHost(host string) error {
	if r := dnsfilter.Malformed(host); r != "" {
		return &malformedError{r}
	}
	return nil
}

// parsePort parses a decimal TCP port, 1 to 65535.
func parsePort(p string) (uint16, bool) {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// prepare validates and expands a requested host and runs Check. It returns
// the host to dial or a *policyError (errBadHost for a malformed host).
func (s *Server) prepare(host string, port uint16) (string, error) {
	if err := checkHost(host); err != nil {
		return host, newPolicyError(joinHostPort(host, port), err)
	}
	if _, err := netip.ParseAddr(host); err != nil && s.cfg.Expand != nil {
		host = s.cfg.Expand(host)
	}
	if s.cfg.Check != nil {
		if err := s.cfg.Check(host, port); err != nil {
			return host, newPolicyError(joinHostPort(host, port), err)
		}
	}
	return host, nil
}

// open validates, expands, checks and dials host:port for a tunnel, filling
// in rec's host, port and resolved address. The connection it returns is
// closed by Server.Close.
func (s *Server) open(ctx context.Context, rec *record, host string, port uint16) (net.Conn, error) {
	rec.Host, rec.Port = host, port
	host, err := s.prepare(host, port)
	rec.Host = host
	if err != nil {
		return nil, err
	}
	rec.req = &Request{Protocol: rec.Protocol, Client: rec.Client}
	c, err := s.dial(withRequest(ctx, rec.req), "tcp", joinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	rec.Resolved = c.RemoteAddr().String()
	return c, nil
}

var errServerClosed = errors.New("proxy is shutting down")

// dial calls Config.Dial with DialTimeout and Close's cancellation, and
// tracks the connection so Close can end it. A denial from Dial comes back
// as a *policyError.
func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	// The caller's ctx need not descend from s.ctx (http.Transport dials
	// with a context detached from the request): join it in.
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	c, err := s.cfg.Dial(ctx, network, addr)
	if err != nil {
		if isDenial(err) {
			return nil, newPolicyError(addr, err)
		}
		if s.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", errServerClosed, err)
		}
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("dial %s: Config.Dial returned no connection and no error", addr)
	}
	tc := &trackedConn{Conn: c, s: s}
	if !s.track(tc, false) {
		c.Close()
		return nil, errServerClosed
	}
	return tc, nil
}

func joinHostPort(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	repSucceeded           = 0x00
	repGeneralFailure      = 0x01
	repNotAllowed          = 0x02
	repNetworkUnreachable  = 0x03
	repHostUnreachable     = 0x04
	repConnectionRefused   = 0x05
	repTTLExpired          = 0x06
	repCommandNotSupported = 0x07
	repAddrTypeUnsupported = 0x08
)

// socksReply maps an error from open to a SOCKS5 reply code.
func socksReply(err error) byte {
	var pe *policyError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &pe):
		return repNotAllowed
	case errors.Is(err, syscall.ECONNREFUSED):
		return repConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return repNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.As(err, &dnsErr):
		return repHostUnreachable
	case isTimeout(err):
		return repTTLExpired
	}
	return repGeneralFailure
}

// credentials checks proxy credentials in constant time. It is the
// go-socks5 CredentialStore for RFC 1929 and checks HTTP Basic too.
type credentials struct{ user, pass string }

func (c credentials) Valid(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(c.user))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(c.pass))
	return u&p == 1
}
