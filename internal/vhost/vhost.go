// Package vhost looks at what a client sends first in a tunnel — a TLS
// ClientHello, HTTP/1.x requests — for the name a reverse proxy would
// route on (the SNI, each request's Host and absolute URL), and asks a
// check whether that name may be reached. It holds bytes until it can
// decide and releases them in order; it never sees the target's side and
// does no I/O. Other protocols (PostgreSQL, SSH, Redis…) have no name to
// route on and pass through untouched after their first bytes.
//
// What it does not see: anything inside TLS. A client that sends an
// allowed SNI and then, inside the encrypted stream, a Host header for
// another vhost is a matter for the reverse proxy (nginx: compare $host
// with $ssl_server_name; Caddy's strict_sni_host).
package vhost

import (
	"fmt"

	"golang.org/x/net/http2/hpack"
)

// DefaultMaxHold is how many bytes a Stream holds at most while it waits
// for a complete ClientHello or request head (Options.MaxHold's default).
const DefaultMaxHold = 64 << 10

// Options configures a Stream.
type Options struct {
	// Check decides a name the client sent (a TLS SNI, an HTTP Host
	// without its port, an absolute URL's host); a non-nil error denies
	// it, and its text is the denial's reason. Check is required.
	Check func(name string) error
	// RequireName denies a ClientHello without an SNI and an HTTP request
	// without a Host (HTTP/1.0, HTTP/0.9): a reverse proxy sends those to
	// its default vhost. Off, they are allowed: there is no name to check.
	RequireName bool
	// AllowECH allows a ClientHello with an encrypted_client_hello
	// extension, whose real name is hidden; by default it is denied.
	AllowECH bool
	// MaxHold: see DefaultMaxHold; 0 means the default.
	MaxHold int
}

// Protocols, as Stream.Proto and Denial.Proto name them.
const (
	ProtoTLS    = "tls"
	ProtoHTTP   = "http"
	ProtoH2C    = "h2c"    // HTTP/2 without TLS
	ProtoOpaque = "opaque" // neither: passed through
)

// A Denial is Feed's error when the client sent a name Check refused, or
// something that cannot be checked.
type Denial struct {
	Proto  string // ProtoTLS, ProtoHTTP or ProtoH2C
	Name   string // the SNI, Host or URL host that was refused; "" if none
	Reason string // why, for people and the audit log
	// Reply is what to send the client instead of the target's answer: a
	// TLS alert (unrecognized_name for a name Check refused, access_denied
	// otherwise), an HTTP/1.1 403 response that closes the connection, or
	// for HTTP/2 a SETTINGS and a GOAWAY whose debug data says why.
	Reply []byte
	// Cause is Options.Check's error when it refused the name, else nil.
	Cause error
}

func (d *Denial) Error() string {
	if d.Name != "" {
		what := map[string]string{ProtoTLS: "TLS SNI", ProtoHTTP: "HTTP Host", ProtoH2C: "HTTP/2 :authority"}[d.Proto]
		return fmt.Sprintf("%s %q: %s", what, d.Name, d.Reason)
	}
	what := map[string]string{ProtoTLS: "TLS", ProtoHTTP: "HTTP", ProtoH2C: "HTTP/2"}[d.Proto]
	return fmt.Sprintf("%s: %s", what, d.Reason)
}

// TLS alert records (TLS 1.2 record version, which TLS 1.3 clients
// accept for alerts): fatal unrecognized_name (112) and access_denied (49).
var (
	alertUnrecognizedName = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112}
	alertAccessDenied     = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49}
)

func httpForbidden(reason string) []byte {
	body := "tsconnect: " + reason + "\n"
	return fmt.Appendf(nil, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// state is what a Stream is waiting for.
type state uint8

const (
	stFirst     state = iota // the first bytes: which protocol
	stTLS                    // a complete ClientHello
	stHead                   // a complete HTTP request head
	stBody                   // n more body bytes
	stChunkSize              // a chunk-size line
	stChunkData              // n more chunk bytes, then CRLF
	stChunkCRLF              // the CRLF after a chunk
	stTrailer                // trailer lines, up to an empty one
	stAfterUp                // after an Upgrade request: HTTP again, or not
	stH2                     // an HTTP/2 frame (h2.go)
	stPass                   // nothing: pass everything
	stDenied                 // denied: release nothing more
)

// A Stream inspects one direction of one tunnel: what the client sends.
// It is not safe for concurrent use.
type Stream struct {
	o     Options
	st    state
	proto string
	buf   []byte // bytes fed and not yet released; buf[:off] was released last call
	off   int
	n     int64          // stBody, stChunkData: bytes left
	after state          // the state after the body: stHead, or stAfterUp
	early int            // bytes at the front of buf[off:] released before they were classified
	hpack *hpack.Decoder // HTTP/2's, made at the first header block
	err   *Denial
}

// New returns a Stream that checks with o.Check.
func New(o Options) *Stream {
	if o.MaxHold <= 0 {
		o.MaxHold = DefaultMaxHold
	}
	return &Stream{o: o, proto: ProtoOpaque}
}

// Passthrough reports whether nothing more will be inspected: Feed returns
// what it is given. A denied Stream is not passthrough.
func (s *Stream) Passthrough() bool { return s.st == stPass }

// Proto is the protocol the Stream found: ProtoTLS, ProtoHTTP, ProtoH2C
// or, for anything else and until it knows, ProtoOpaque.
func (s *Stream) Proto() string { return s.proto }

// Feed takes the next bytes the client sent and returns those that may be
// forwarded now, in order: a prefix of everything fed and not yet
// returned. Bytes it holds (a ClientHello, a request head until its end
// is checked) come out of a later call; the start of a first line is
// released before its end, as nothing can act on it. The returned slice
// may be p itself or a buffer of the Stream's, valid until the next call.
// When the stream is denied, Feed returns the bytes allowed before the
// denied part and a *Denial, and every later call returns the same
// *Denial and nothing.
func (s *Stream) Feed(p []byte) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if len(s.buf) == s.off {
		s.buf, s.off = s.buf[:0], 0
		// The common cases, without a copy: everything passes, or p is
		// all body.
		switch {
		case s.st == stPass:
			return p, nil
		case (s.st == stBody || s.st == stChunkData) && int64(len(p)) <= s.n:
			s.skip(int64(len(p)))
			return p, nil
		}
	} else if s.off > 0 {
		s.buf = s.buf[:copy(s.buf, s.buf[s.off:])]
		s.off = 0
	}
	s.buf = append(s.buf, p...)
	start := s.off + s.early
	var d *Denial
	for d == nil {
		rest := s.buf[s.off:]
		if len(rest) == 0 {
			break
		}
		var used int
		used, d = s.step(rest)
		if used == 0 && d == nil {
			if len(rest) > s.o.MaxHold {
				d = s.deny("", fmt.Sprintf("more than %d bytes without a complete %s", s.o.MaxHold, s.waitingFor()), false)
			}
			break
		}
		s.off += used
	}
	var out []byte
	switch {
	case d == nil && s.st == stFirst:
		// The start of a first line without its end goes out as it comes
		// (a client that sends a keystroke or a prompt and waits would
		// otherwise wait forever). No server acts on a line before its
		// end, and the line, once complete, is classified and checked as
		// ever; only a client that sends a request line in pieces lets
		// the target see those pieces of a request that is then refused.
		out, s.early = s.buf[start:], len(s.buf)-s.off
	case s.off >= start:
		out, s.early = s.buf[start:s.off], 0
	default:
		s.early = start - s.off
	}
	if d != nil {
		s.st, s.err = stDenied, d
		return out, d
	}
	return out, nil
}

func (s *Stream) waitingFor() string {
	switch s.st {
	case stTLS:
		return "ClientHello"
	case stHead:
		return "request head"
	case stChunkSize, stTrailer:
		return "chunk line"
	}
	return "first line"
}

// skip passes n bytes of a body or chunk, at most what is left of it.
func (s *Stream) skip(n int64) {
	if s.n -= n; s.n > 0 {
		return
	}
	if s.st == stBody {
		s.st = s.after
	} else {
		s.st = stChunkCRLF
	}
}

// step consumes what it can of b, a non-empty run of unreleased bytes:
// how many bytes may be released, and a denial. 0 and nil: it needs more.
func (s *Stream) step(b []byte) (int, *Denial) {
	switch s.st {
	case stFirst:
		return s.first(b)
	case stTLS:
		return s.clientHello(b)
	case stHead:
		return s.head(b)
	case stAfterUp:
		// The server may have switched protocols (a WebSocket frame never
		// starts with a token character) or refused the upgrade and
		// read the next request.
		if mayStartRequest(b[0]) {
			s.st = stHead
			return s.head(b)
		}
		s.st = stPass
		return len(b), nil
	case stBody, stChunkData:
		n := min(int64(len(b)), s.n)
		s.skip(n)
		return int(n), nil
	case stChunkCRLF:
		if len(b) < 2 {
			return 0, nil
		}
		if b[0] != '\r' || b[1] != '\n' {
			return 0, s.deny("", "malformed chunked body: no CRLF after a chunk", false)
		}
		s.st = stChunkSize
		return 2, nil
	case stChunkSize:
		return s.chunkSize(b)
	case stTrailer:
		return s.trailer(b)
	case stH2:
		return s.h2Frames(b)
	}
	return len(b), nil // stPass
}

func (s *Stream) first(b []byte) (int, *Denial) {
	switch {
	case b[0] == 0x16: // a TLS handshake record
		s.st, s.proto = stTLS, ProtoTLS
		return s.clientHello(b)
	case mayStartRequest(b[0]):
		kind, done := classify(b)
		if !done {
			return 0, nil
		}
		if kind == lineHTTP {
			s.st, s.proto = stHead, ProtoHTTP
			return s.head(b)
		}
		if kind == lineHTTP09 {
			s.proto = ProtoHTTP
			if s.o.RequireName {
				return 0, s.deny("", "an HTTP/0.9 request has no Host", false)
			}
		}
	}
	s.st = stPass
	return len(b), nil
}

// deny makes the Stream's denial. refused: Check refused the name (a TLS
// client then gets unrecognized_name rather than access_denied).
func (s *Stream) deny(name, reason string, refused bool) *Denial {
	d := &Denial{Proto: s.proto, Name: name, Reason: reason}
	switch s.proto {
	case ProtoTLS:
		d.Reply = alertAccessDenied
		if refused {
			d.Reply = alertUnrecognizedName
		}
	case ProtoH2C:
		d.Reply = h2GoAway(d.Error())
	default:
		if s.proto == ProtoOpaque {
			d.Proto = ProtoHTTP
		}
		d.Reply = httpForbidden(d.Error())
	}
	return d
}

// check asks Options.Check about name.
func (s *Stream) check(name string) *Denial {
	if err := s.o.Check(name); err != nil {
		d := s.deny(name, err.Error(), true)
		d.Cause = err
		return d
	}
	return nil
}
