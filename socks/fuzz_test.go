package socks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/dnsfilter"
)

// The fuzz targets below drive the proxy's two request paths with raw client
// bytes: FuzzSOCKS5 (greeting, RFC 1929 authentication, request) and
// FuzzHTTPProxy (CONNECT and absolute-form requests). Each starts two
// proxies, one without and one with proxy credentials, once per fuzz run,
// in front of a policy that allows exactly allowed.test on ports 80 and 443
// and denies everything else. Every input is one client connection: the
// bytes are written, the connection is half-closed (at once, or once the
// proxy has answered), and everything the proxy sends is read until it
// closes. What a target checks is listed in its
// comment; that no goroutine is left behind is checked once the proxies
// have closed, at the end of the run.
//
// Seeds are added in code (f.Add) and kept in testdata/fuzz/<Target>/; run
// for a while with
//
//	go test ./socks -run '^$' -fuzz '^FuzzSOCKS5$' -fuzztime 60s
//	go test ./socks -run '^$' -fuzz '^FuzzHTTPProxy$' -fuzztime 60s

const (
	fuzzHost     = "allowed.test" // the one name the fuzz policy allows
	fuzzUser     = "fuzz-user"
	fuzzPass     = "fuzz-pass"
	fuzzMaxInput = 128 << 10             // longer inputs are cut: enough to pass MaxHeaderBytes
	fuzzBudget   = 5 * time.Second       // per input; the fuzzer itself gives up at 10s
	fuzzQuiet    = 10 * time.Millisecond // FuzzHTTPProxy: how long the proxy may be silent before the client half-closes
	// fuzzHandshake is the proxies' HandshakeTimeout. Clients always
	// half-close, so it only fires when the machine is too busy to serve
	// an input in time, and replies may then be cut short.
	fuzzHandshake = time.Second
)

// fuzzAllowed is the fuzz policy: allowed.test, ports 80 and 443, exactly
// (no case folding, no trailing dot).
func fuzzAllowed(host string, port uint16) bool {
	return host == fuzzHost && (port == 80 || port == 443)
}

// fuzzEvent is one call of Config.Check or Config.Dial.
type fuzzEvent struct {
	client string // Dial: the client connection that caused it ("" if ctx does not say)
	target string // host:port
	ok     bool   // Check: allowed
	bad    string // Dial: how this dial breaks the policy, "" if it does not
}

// fuzzPolicy is the fuzz targets' Config.Check and Config.Dial: the
// allowlist above in front of a fakeNet, recording every call.
type fuzzPolicy struct {
	fn *fakeNet

	mu        sync.Mutex
	checks    []fuzzEvent
	dials     []fuzzEvent
	okChecked map[string]bool // every host:port Check ever allowed
}

func (p *fuzzPolicy) Check(host string, port uint16) error {
	target := joinHostPort(host, port)
	ok := fuzzAllowed(host, port)
	p.mu.Lock()
	p.checks = append(p.checks, fuzzEvent{target: target, ok: ok})
	if ok {
		p.okChecked[target] = true
	}
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("fuzz policy: %w", &denyError{rule: "allowed.test:80,443"})
	}
	return nil
}

// Dial refuses, and records as bad, any dial the policy does not allow or
// that Check did not allow first; the others reach the fakeNet.
func (p *fuzzPolicy) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ev := fuzzEvent{target: addr}
	// HTTP dials carry (a copy of) the request's context, which holds the
	// client connection; SOCKS5 dials carry the server's.
	if cc, ok := ctx.Value(connKey{}).(*clientConn); ok {
		ev.client = cc.RemoteAddr().String()
	}
	host, ps, err := net.SplitHostPort(addr)
	port, perr := strconv.ParseUint(ps, 10, 16)
	p.mu.Lock()
	switch {
	case network != "tcp":
		ev.bad = "network " + network
	case err != nil || perr != nil:
		ev.bad = "not host:port"
	case !fuzzAllowed(host, uint16(port)):
		ev.bad = "not allowed by the policy"
	case joinHostPort(host, uint16(port)) != addr:
		ev.bad = "not in the form Check saw"
	case !p.okChecked[addr]:
		ev.bad = "dialed before Check allowed it"
	}
	p.dials = append(p.dials, ev)
	p.mu.Unlock()
	if ev.bad != "" {
		return nil, &denyError{rule: "fuzz: " + ev.bad}
	}
	return p.fn.Dial(ctx, network, addr)
}

// reset forgets the calls recorded so far (not okChecked).
func (p *fuzzPolicy) reset() {
	p.mu.Lock()
	p.checks, p.dials = p.checks[:0], p.dials[:0]
	p.mu.Unlock()
	p.fn.mu.Lock()
	p.fn.dialed, p.fn.checked = nil, nil
	p.fn.mu.Unlock()
}

func (p *fuzzPolicy) events() (checks, dials []fuzzEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.checks), slices.Clone(p.dials)
}

// fuzzHarness is what a fuzz target starts once per run.
type fuzzHarness struct {
	pol         *fuzzPolicy
	plain, auth *Server // without and with proxy credentials
}

// newFuzzHarness starts the proxies and the targets behind them:
// allowed.test is an echo server on every port, except that with
// httpUpstream allowed.test:80 is an HTTP server (fuzzUpstream). Closing
// them, and the goroutine check, are registered with tb.Cleanup.
func newFuzzHarness(tb testing.TB, httpUpstream bool) *fuzzHarness {
	tb.Cleanup(fuzzCheckGoroutines(tb)) // registered first: runs after everything has closed
	fn := newFakeNet()
	es := newTCPServer(tb, echo)
	fn.add(fuzzHost, es.addr())
	if httpUpstream {
		up := httptest.NewServer(http.HandlerFunc(fuzzUpstream))
		tb.Cleanup(up.Close)
		fn.add(fuzzHost+":80", up.Listener.Addr().String())
	}
	pol := &fuzzPolicy{fn: fn, okChecked: map[string]bool{}}
	cfg := Config{
		Dial:             pol.Dial,
		Check:            pol.Check,
		HandshakeTimeout: fuzzHandshake,
		DialTimeout:      2 * time.Second,
		MaxConns:         4096, // never refuse: refusals would change the replies
		Logf:             func(string, ...any) {},
	}
	h := &fuzzHarness{pol: pol, plain: startProxy(tb, fn, cfg)}
	cfg.Username, cfg.Password = fuzzUser, fuzzPass
	h.auth = startProxy(tb, fn, cfg)
	return h
}

// server picks the proxy for an input and, if closed connections pile up
// (net/http lingers 500ms after an error reply), waits for some to go.
func (h *fuzzHarness) server(auth bool) *Server {
	s := h.plain
	if auth {
		s = h.auth
	}
	for i := 0; i < 200 && s.Stats().Active > 256; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// fuzzUpstream is allowed.test:80 in FuzzHTTPProxy. It reports the Host it
// was sent and how many Proxy-* headers reached it.
func fuzzUpstream(w http.ResponseWriter, r *http.Request) {
	n := 0
	for k := range r.Header {
		if len(k) >= 6 && strings.EqualFold(k[:6], "proxy-") {
			n++
		}
	}
	w.Header().Set("X-Fuzz-Upstream-Host", r.Host)
	w.Header().Set("X-Fuzz-Upstream-Proxy-Headers", strconv.Itoa(n))
	io.Copy(io.Discard, r.Body)
	io.WriteString(w, "upstream ok\n")
}

// fuzzCheckGoroutines is checkGoroutines for a testing.TB, made to work
// when fuzzing too: it looks for goroutines that did not exist when it was
// called, other than those the fuzzing machinery starts meanwhile
// (os/signal, internal/fuzz).
func fuzzCheckGoroutines(tb testing.TB) func() {
	before := goroutineStacks()
	return func() {
		tb.Helper()
		var leaked []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			leaked = leaked[:0]
			for id, stack := range goroutineStacks() {
				if _, ok := before[id]; !ok && !strings.Contains(stack, "os/signal.") && !strings.Contains(stack, "internal/fuzz.") {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(leaked) > 0 {
			tb.Fatalf("%d goroutines left after the fuzz run's proxies closed:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	}
}

// goroutineStacks returns the stack of every goroutine by its id, except
// the caller's.
func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	m := map[string]string{}
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller
		}
		if id, _, ok := strings.Cut(strings.TrimPrefix(g, "goroutine "), " "); ok {
			m[id] = g
		}
	}
	return m
}

// fuzzExchange is one client connection: it writes data and reads all the
// proxy sends until the proxy closes the connection. The client half-closes
// right after writing (quiet == 0), or once answered(what it got so far)
// reports true or the proxy has been silent for quiet. It fails t if the
// proxy has not closed within fuzzBudget. reset reports a connection reset,
// after which got may be cut short.
func fuzzExchange(t *testing.T, s *Server, data []byte, quiet time.Duration, answered func(got []byte) bool) (local string, got []byte, reset bool) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	deadline := time.Now().Add(fuzzBudget)
	tc.SetDeadline(deadline)
	// The writer half-closes: reading must go on meanwhile, or a tunnel
	// echoing a long input back would block both sides.
	wrote, halfClose := make(chan struct{}), make(chan struct{})
	var once sync.Once
	requestHalfClose := func() { once.Do(func() { close(halfClose) }) }
	defer requestHalfClose() // also on t.Fatal, so the writer ends
	go func() {
		defer close(wrote)
		tc.Write(data) // may fail once the proxy has hung up: that is its right
		if quiet > 0 {
			<-halfClose
		}
		tc.CloseWrite()
	}()
	closing := quiet <= 0
	if !closing && answered != nil && answered(nil) {
		closing = true
		requestHalfClose()
	}
	buf := make([]byte, 32<<10)
	for {
		if !closing {
			d := time.Now().Add(quiet)
			if d.After(deadline) {
				d = deadline
			}
			tc.SetReadDeadline(d)
		}
		n, err := tc.Read(buf)
		got = append(got, buf[:n]...)
		var ne net.Error
		switch {
		case err == nil:
			if !closing && answered != nil && answered(got) {
				closing = true
				requestHalfClose()
				tc.SetReadDeadline(deadline)
			}
			continue
		case errors.Is(err, io.EOF):
		case errors.Is(err, syscall.ECONNRESET):
			reset = true
		case errors.As(err, &ne) && ne.Timeout() && !closing && time.Now().Before(deadline):
			closing = true
			requestHalfClose()
			tc.SetReadDeadline(deadline)
			continue
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("proxy still had the connection open %v after it started (hang); got %q", fuzzBudget, got)
		default:
			t.Fatalf("reading the reply: %v", err)
		}
		break
	}
	requestHalfClose()
	<-wrote
	return tc.LocalAddr().String(), got, reset
}

var malformedDenial = regexp.MustCompile(` not allowed: (malformed (name|IP literal)|ambiguous IP literal): `)

// fuzzValidHost is what the proxy may pass to Check: what dnsfilter's one
// definition of a well-formed destination accepts.
func fuzzValidHost(h string) bool { return dnsfilter.Malformed(h) == "" }

// checkChecks fails t if a Check call saw a host that is not a valid host
// name or IP literal.
func checkChecks(t *testing.T, checks []fuzzEvent) {
	t.Helper()
	for _, ev := range checks {
		h, _, err := net.SplitHostPort(ev.target)
		if err != nil || !fuzzValidHost(h) {
			t.Errorf("Check saw %q: not a valid host name or IP literal", ev.target)
		}
	}
}

// checkBadDials fails t if any dial broke the policy.
func checkBadDials(t *testing.T, dials []fuzzEvent) {
	t.Helper()
	for _, ev := range dials {
		if ev.bad != "" {
			t.Errorf("Dial(%q): %s", ev.target, ev.bad)
		}
	}
}

// ---- SOCKS5 ----

// socksExpect is what the proxy must do with one SOCKS5 input.
type socksExpect struct {
	reply   []byte // the exact reply, up to and excluding a success reply
	success bool   // then a success reply (05 00 00 01 127.0.0.1 port), then tunnel echoed
	tunnel  []byte // client bytes after the request
	check   string // host:port the proxy must pass to Check, "" for none
	dial    string // host:port the proxy must dial, "" for none
}

// modelSOCKS5 works out, from RFC 1928 and 1929 and the package's
// documentation, what the proxy must answer to data, written all at once
// and followed by a half-close.
func modelSOCKS5(data []byte, auth bool) socksExpect {
	var e socksExpect
	if len(data) == 0 {
		return e
	}
	if data[0] == 4 {
		e.reply = []byte{0, 0x5b, 0, 0, 0, 0, 0, 0} // SOCKS4 "request rejected"
		return e
	}
	// Greeting: VER NMETHODS METHODS.
	if len(data) < 2 || len(data) < 2+int(data[1]) {
		return e
	}
	methods, p := data[2:2+int(data[1])], data[2+int(data[1]):]
	want := byte(0)
	if auth {
		want = 2
	}
	if !bytes.Contains(methods, []byte{want}) {
		e.reply = []byte{5, 0xff}
		return e
	}
	e.reply = []byte{5, want}
	if auth {
		// RFC 1929: VER=1 ULEN UNAME PLEN PASSWD.
		if len(p) < 2 || p[0] != 1 || len(p) < 2+int(p[1])+1 {
			return e
		}
		user, q := p[2:2+int(p[1])], p[2+int(p[1]):]
		if len(q) < 1+int(q[0]) {
			return e
		}
		pass := q[1 : 1+int(q[0])]
		p = q[1+int(q[0]):]
		if string(user) != fuzzUser || string(pass) != fuzzPass {
			e.reply = append(e.reply, 1, 1)
			return e
		}
		e.reply = append(e.reply, 1, 0)
	}
	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
	if len(p) < 4 || p[0] != 5 {
		return e
	}
	failure := func(code byte) { e.reply = append(e.reply, 5, code, 0, 1, 0, 0, 0, 0, 0, 0) }
	cmd, atyp := p[1], p[3]
	var host string
	var rest []byte
	switch atyp {
	case 1:
		if len(p) < 4+4+2 {
			return e
		}
		host, rest = netip.AddrFrom4([4]byte(p[4:8])).String(), p[8:]
	case 4:
		if len(p) < 4+16+2 {
			return e
		}
		host, rest = netip.AddrFrom16([16]byte(p[4:20])).Unmap().String(), p[20:]
	case 3:
		if len(p) < 5 || len(p) < 5+int(p[4])+2 {
			return e
		}
		host, rest = string(p[5:5+int(p[4])]), p[5+int(p[4]):]
	default:
		failure(0x08) // address type not supported
		return e
	}
	port := binary.BigEndian.Uint16(rest)
	rest = rest[2:]
	switch {
	case cmd != 1:
		failure(0x07) // command not supported: only CONNECT
	case port == 0:
		failure(0x01)
	case !fuzzValidHost(host):
		failure(0x02) // malformed: denied before policy sees it
	case !fuzzAllowed(host, port):
		e.check = joinHostPort(host, port)
		failure(0x02) // not allowed by ruleset
	default:
		e.check = joinHostPort(host, port)
		e.dial = e.check
		e.success = true
		e.tunnel = rest
	}
	return e
}

// checkSOCKSReplyForm parses got as a SOCKS5 server's bytes without a model:
// a method selection, an optional RFC 1929 status, a request reply with a
// documented code and a well-formed address. It returns the length of the
// handshake part (what follows is tunnel data). With cut, the reply may
// end anywhere.
func checkSOCKSReplyForm(t *testing.T, got []byte, auth, cut bool) int {
	t.Helper()
	if len(got) == 0 {
		return 0
	}
	if got[0] == 0 { // SOCKS4 refusal
		if len(got) > 8 || len(got) > 1 && got[1] != 0x5b {
			t.Fatalf("SOCKS4 reply % x, want 00 5b and 6 more bytes", got)
		}
		return len(got)
	}
	short := func(what string) int {
		if !cut {
			t.Fatalf("reply % x ends inside the %s", got, what)
		}
		return len(got)
	}
	if got[0] != 5 {
		t.Fatalf("reply % x: version %d, want 5", got, got[0])
	}
	if len(got) < 2 {
		return short("method selection")
	}
	switch m := got[1]; {
	case m == 0xff:
		if len(got) != 2 {
			t.Fatalf("reply % x: bytes after 05 ff (no acceptable methods)", got)
		}
		return 2
	case auth && m != 2, !auth && m != 0:
		t.Fatalf("reply % x: method %02x selected", got, m)
	}
	p := got[2:]
	if auth && len(p) > 0 {
		if len(p) < 2 {
			return short("RFC 1929 status")
		}
		if p[0] != 1 || p[1] > 1 {
			t.Fatalf("reply % x: RFC 1929 status % x, want 01 00 or 01 01", got, p[:2])
		}
		if p[1] == 1 && len(p) > 2 {
			t.Fatalf("reply % x: bytes after a failed authentication", got)
		}
		p = p[2:]
	}
	if len(p) == 0 {
		return len(got)
	}
	if len(p) < 4 {
		return short("request reply")
	}
	if p[0] != 5 || p[1] > repAddrTypeUnsupported || p[2] != 0 || p[3] != 1 && p[3] != 4 {
		t.Fatalf("reply % x: request reply % x: want 05, a code 00-08, 00, address type 01 or 04", got, p[:4])
	}
	n := 4 + 4 + 2
	if p[3] == 4 {
		n = 4 + 16 + 2
	}
	if len(p) < n {
		return short("request reply")
	}
	if p[1] != repSucceeded && len(p) > n {
		t.Fatalf("reply % x: bytes after a failure reply", got)
	}
	return len(got) - len(p) + n
}

// FuzzSOCKS5 feeds raw client bytes to the SOCKS5 path. It checks that the
// proxy, for every input:
//   - neither panics nor hangs: it closes the connection within fuzzBudget
//     (5s) of the client's connecting and half-closing;
//   - replies with well-formed SOCKS5: a method selection starting 05, an
//     RFC 1929 status 01 00 or 01 01, a request reply 05 <code 00-08> 00
//     with address type 01 or 04, nothing after a failure;
//   - replies exactly as the model (modelSOCKS5) says, and echoes the
//     client's extra bytes through an allowed tunnel (a reset, which can
//     come when the proxy hangs up on unread bytes, or the handshake
//     deadline, on a machine too busy to serve the input within it, may
//     cut the reply short);
//   - calls Check only with valid host names or IP literals, and exactly as
//     the model says (once, for the request's host:port, after
//     authentication);
//   - calls Dial only for allowed.test:80 or :443 after Check allowed that
//     very host:port, and exactly when the model says: never for a denied
//     name, an IP literal or a malformed name, nor before authentication.
//
// No goroutine may be left once the proxies close at the end of the run.
func FuzzSOCKS5(f *testing.F) {
	for _, s := range socks5Seeds() {
		f.Add(s.auth, s.data)
	}
	h := newFuzzHarness(f, false)
	f.Fuzz(h.socks5Input)
}

// socks5Input is FuzzSOCKS5's body: one client connection.
func (h *fuzzHarness) socks5Input(t *testing.T, auth bool, data []byte) {
	if len(data) > 0 && data[0] != 4 && data[0] != 5 {
		return // not SOCKS: FuzzHTTPProxy's business
	}
	if len(data) > fuzzMaxInput {
		data = data[:fuzzMaxInput]
	}
	s := h.server(auth)
	h.pol.reset()
	start := time.Now()
	_, got, reset := fuzzExchange(t, s, data, 0, nil)
	// A reset, or the handshake deadline, may cut the reply short; only the
	// deadline can stop the proxy before Check or Dial.
	slow := time.Since(start) >= fuzzHandshake
	cut := reset || slow
	checks, dials := h.pol.events()
	checkBadDials(t, dials)
	checkChecks(t, checks)

	e := modelSOCKS5(data, auth)
	hs := checkSOCKSReplyForm(t, got, auth, cut)
	want := e.reply
	if e.success {
		// 05 00 00 01 127.0.0.1, and the port the proxy dialed from.
		ok := []byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0}
		for k := 8; k < 10; k++ {
			if n := len(e.reply) + k; n < len(got) {
				ok[k] = got[n]
			}
		}
		want = bytes.Join([][]byte{e.reply, ok, e.tunnel}, nil)
	}
	if !bytes.Equal(got, want) && !(cut && bytes.HasPrefix(want, got)) {
		t.Fatalf("auth=%v input % x:\nreply % x (reset %v, cut short %v, handshake %d bytes)\nwant  % x", auth, data, got, reset, cut, hs, want)
	}
	if e.success && len(got) >= len(e.reply)+10 && binary.BigEndian.Uint16(got[len(e.reply)+8:]) == 0 {
		t.Errorf("success reply % x reports port 0", got[len(e.reply):len(e.reply)+10])
	}

	var wantChecks, wantDials, gotChecks, gotDials []string
	if e.check != "" {
		wantChecks = []string{e.check}
	}
	if e.dial != "" {
		wantDials = []string{e.dial}
	}
	for _, ev := range checks {
		gotChecks = append(gotChecks, ev.target)
	}
	for _, ev := range dials {
		gotDials = append(gotDials, ev.target)
	}
	// Cut short by the handshake deadline, the proxy may have stopped
	// before Check or Dial; never after a different one.
	if !slices.Equal(gotChecks, wantChecks) && !(slow && len(gotChecks) == 0) {
		t.Errorf("auth=%v input % x: Check saw %q, want %q", auth, data, gotChecks, wantChecks)
	}
	if !slices.Equal(gotDials, wantDials) && !(slow && len(gotDials) == 0) {
		t.Errorf("auth=%v input % x: Dial saw %q, want %q", auth, data, gotDials, wantDials)
	}
}

type socksSeed struct {
	auth bool
	data []byte
}

// socks5Seeds are hand-written SOCKS5 inputs: each address type, each
// command, denied names and ports, IP literals in the legacy forms, names
// with bytes that must never reach policy, authentication right and wrong,
// and truncated or oversized handshakes.
func socks5Seeds() []socksSeed {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	be := func(port uint16) []byte { return binary.BigEndian.AppendUint16(nil, port) }
	greet := []byte{5, 1, 0}
	greetAuth := []byte{5, 1, 2}
	userpass := func(u, p string) []byte {
		return cat([]byte{1, byte(len(u))}, []byte(u), []byte{byte(len(p))}, []byte(p))
	}
	login := userpass(fuzzUser, fuzzPass)
	name := func(cmd byte, host string, port uint16) []byte {
		return cat([]byte{5, cmd, 0, 3, byte(len(host))}, []byte(host), be(port))
	}
	ip4 := func(cmd byte, a [4]byte, port uint16) []byte { return cat([]byte{5, cmd, 0, 1}, a[:], be(port)) }
	ip6 := func(cmd byte, a netip.Addr, port uint16) []byte {
		b := a.As16()
		return cat([]byte{5, cmd, 0, 4}, b[:], be(port))
	}
	var seeds []socksSeed
	add := func(auth bool, parts ...[]byte) { seeds = append(seeds, socksSeed{auth, cat(parts...)}) }

	// Allowed, with and without tunnel data, in one write or "optimistic".
	add(false, greet, name(1, fuzzHost, 443), []byte("hello through the tunnel"))
	add(false, greet, name(1, fuzzHost, 80))
	add(false, []byte{5, 3, 2, 1, 0}, name(1, fuzzHost, 443), []byte("GET / HTTP/1.0\r\n\r\n"))
	add(true, greetAuth, login, name(1, fuzzHost, 443), []byte("authenticated"))
	add(true, []byte{5, 2, 0, 2}, login, name(1, fuzzHost, 80))
	// Denied: other names, other ports, look-alikes of the allowed name.
	for _, host := range []string{
		"evil.test", "ALLOWED.TEST", "allowed.test.", "allowed.test..", "xallowed.test",
		"allowed.test.evil.test", "evil.test@allowed.test", "allowed.test:443",
		"allowed.test\x00", "allowed.test\r\nX-Injected: 1", "allowed.test/", "allowed.test%00",
		"allowed.test ", " allowed.test", "allowed.tes\u0442", "*.allowed.test", "",
		"localhost", "metadata.google.internal",
		// IP literals sent as names, legacy forms included.
		"127.0.0.1", "0x7f.0.0.1", "2130706433", "127.1", "0177.0.0.1", "017700000001",
		"::1", "[::1]", "::ffff:127.0.0.1", "fe80::1%eth0", "100.100.100.100",
		strings.Repeat("a", 63) + ".test", strings.Repeat("a", 64) + ".test",
	} {
		add(false, greet, name(1, host, 443))
	}
	for _, port := range []uint16{0, 22, 8080, 65535} {
		add(false, greet, name(1, fuzzHost, port))
	}
	add(false, greet, ip4(1, [4]byte{127, 0, 0, 1}, 443))
	add(false, greet, ip4(1, [4]byte{100, 100, 100, 100}, 80))
	add(false, greet, ip4(1, [4]byte{0, 0, 0, 0}, 0))
	add(false, greet, ip6(1, netip.MustParseAddr("::1"), 443))
	add(false, greet, ip6(1, netip.MustParseAddr("::ffff:127.0.0.1"), 443))
	add(false, greet, ip6(1, netip.MustParseAddr("fd7a:115c:a1e0::1"), 80))
	// BIND, UDP ASSOCIATE and unknown commands; unknown address types.
	add(false, greet, name(2, fuzzHost, 443))
	add(false, greet, name(3, fuzzHost, 443))
	add(false, greet, ip4(3, [4]byte{0, 0, 0, 0}, 0))
	add(false, greet, name(0, fuzzHost, 443))
	add(false, greet, name(0xff, fuzzHost, 443))
	for _, atyp := range []byte{0, 2, 5, 0xff} {
		add(false, greet, []byte{5, 1, 0, atyp, 1, 2, 3, 4, 0, 80})
	}
	// Wrong versions and reserved byte.
	add(false, greet, []byte{4, 1, 0, 3, 12}, []byte(fuzzHost), be(443))
	add(false, greet, []byte{5, 1, 1, 3, 12}, []byte(fuzzHost), be(443))
	add(false, []byte{4, 1, 0, 80, 127, 0, 0, 1, 'u', 0})                       // SOCKS4
	add(false, []byte{4, 1, 0, 80, 0, 0, 0, 1, 0}, []byte(fuzzHost), []byte{0}) // SOCKS4a
	// Method negotiation.
	add(false, []byte{5, 0})
	add(false, []byte{5, 1, 2}, name(1, fuzzHost, 443))
	add(false, []byte{5, 1, 0xff})
	add(true, greet, name(1, fuzzHost, 443)) // no-auth to an authenticating proxy
	add(false, []byte{5, 9, 1, 3, 4, 0x80, 0xfe, 0xff, 0x7f, 6, 0}, name(1, fuzzHost, 443))
	add(true, []byte{5, 4, 0, 1, 3, 2}, login, name(1, fuzzHost, 443))
	// Authentication failures and oddities.
	add(true, greetAuth, userpass(fuzzUser, "wrong"), name(1, fuzzHost, 443))
	add(true, greetAuth, userpass("", ""), name(1, fuzzHost, 443))
	add(true, greetAuth, userpass(fuzzUser, fuzzPass+"x"))
	add(true, greetAuth, []byte{5, 9}, []byte(fuzzUser), []byte{9}, []byte(fuzzPass)) // RFC 1929 version 5
	add(true, greetAuth, login, name(1, "evil.test", 443))
	add(true, greetAuth, login, ip4(1, [4]byte{127, 0, 0, 1}, 80))
	add(true, greetAuth, login, name(2, fuzzHost, 443))
	// Truncated handshakes and lengths that promise more than is sent.
	add(false)
	add(false, []byte{5})
	add(false, []byte{5, 1})
	add(false, []byte{5, 200, 0})
	add(false, greet, []byte{5})
	add(false, greet, []byte{5, 1, 0})
	add(false, greet, []byte{5, 1, 0, 1, 127, 0})
	add(false, greet, []byte{5, 1, 0, 4, 0, 0, 0})
	add(false, greet, []byte{5, 1, 0, 3})
	add(false, greet, []byte{5, 1, 0, 3, 200}, []byte(fuzzHost), be(443))
	add(false, greet, []byte{5, 1, 0, 3, 12}, []byte(fuzzHost), []byte{1})
	add(true, greetAuth, []byte{1})
	add(true, greetAuth, []byte{1, 200, 'a'})
	add(true, greetAuth, []byte{1, 9}, []byte(fuzzUser))
	add(true, greetAuth, []byte{1, 9}, []byte(fuzzUser), []byte{200, 'x'})
	// More data than a handshake, after an allowed request and after a
	// refusal (the proxy hangs up on bytes it has not read). Longer inputs,
	// 255-byte fields included, are in TestFuzzLongInputs: the fuzzer's
	// minimizer takes time quadratic in an input's length.
	add(false, greet, name(1, fuzzHost, 443), bytes.Repeat([]byte("0123456789abcdef"), 8))
	add(false, greet, name(1, "evil.test", 443), bytes.Repeat([]byte("x"), 100))
	return seeds
}

// ---- HTTP ----

// httpModelReq is one request of an input, as http.ReadRequest parses it.
type httpModelReq struct {
	req        *http.Request
	connect    bool
	target     string // host:port the proxy may check ("" if the target is malformed)
	authorized bool   // proxy credentials right, or none needed
	allowed    bool   // target allowed by the policy, and authorized: the proxy may dial it
	end        int    // offset in the input just past this request's header
}

// httpModel is what an input holds: the requests the proxy may serve, in
// order, until one cannot be parsed or one may start a tunnel.
type httpModel struct {
	reqs     []httpModelReq
	firstErr error // why the first request did not parse
	complete int   // how many of reqs the proxy can answer without waiting for more bytes
}

// modelHTTP parses data as the proxy's http.Server will. It errs on the
// side of more requests (it reads on after a request the server would hang
// up after), so that what the proxy checks and dials is a subset of it.
func modelHTTP(data []byte, auth bool) httpModel {
	var m httpModel
	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	lastMethod := ""
	for {
		if lastMethod == "POST" {
			// net/http tolerates CR and LF after a POST body (RFC 7230 section 3).
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			if len(m.reqs) == 0 {
				m.firstErr = err
			}
			return m
		}
		lastMethod = req.Method
		mr := httpModelReq{req: req, connect: req.Method == http.MethodConnect, end: len(data) - rd.Len() - br.Buffered()}
		mr.authorized = !auth || fuzzAuthorized(req.Header.Get("Proxy-Authorization"))
		var host string
		var port uint16
		ok := false
		if mr.connect {
			host, port, ok = fuzzSplitAuthority(req.RequestURI)
		} else if u := req.URL; u.IsAbs() && u.Host != "" && u.Scheme == "http" {
			host, port, ok = u.Hostname(), 80, true
			if u.Port() != "" {
				port, ok = fuzzPort(u.Port())
			}
		}
		if ok && fuzzValidHost(host) {
			mr.target = joinHostPort(host, port)
			mr.allowed = mr.authorized && fuzzAllowed(host, port)
		}
		m.reqs = append(m.reqs, mr)
		if mr.connect && mr.allowed {
			m.complete++
			return m // the rest is tunnel data
		}
		_, err = io.Copy(io.Discard, req.Body)
		if err == nil || !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && rd.Len()+br.Buffered() >= 16 {
			// The proxy has all it needs to answer: a body that
			// failed before the input's end will not wait for more.
			m.complete++
		}
		if err != nil {
			return m
		}
	}
}

// fuzzSplitAuthority parses a CONNECT target: host:port, decimal port 1-65535.
func fuzzSplitAuthority(s string) (string, uint16, bool) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, false
	}
	port, ok := fuzzPort(ps)
	return host, port, ok
}

func fuzzPort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil && n != 0
}

// fuzzAuthorized reports whether a Proxy-Authorization value carries the
// fuzz credentials: Basic (any case) and base64 of user:pass.
func fuzzAuthorized(v string) bool {
	scheme, enc, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	return err == nil && string(dec) == fuzzUser+":"+fuzzPass
}

// Statuses net/http itself answers with, before the proxy's handler runs:
// malformed request, Expect other than 100-continue, header too large,
// unsupported transfer coding, HTTP version other than 1.x.
var netHTTPStatuses = []int{400, 417, 431, 501, 505}

var statusLineRE = regexp.MustCompile(`^HTTP/1\.[01] [1-5][0-9][0-9] `)

// FuzzHTTPProxy feeds raw client bytes to the HTTP proxy path. It checks
// that the proxy, for every input:
//   - neither panics nor hangs: it closes the connection within fuzzBudget
//     (5s; the client half-closes right after writing or, with quiet set,
//     once the proxy has answered each whole request or been silent for
//     fuzzQuiet);
//   - answers only with responses that start "HTTP/1.1 " and a 3-digit
//     status ("HTTP/1.0 " for an HTTP/1.0 request) and parse, one after the
//     other, up to a CONNECT's 200;
//   - answers an input whose first request does not parse with 400, 431 or
//     501, or 403 saying its host is malformed; a first request whose target is denied or malformed with 403 or
//     400 (or a status net/http sends by itself: 417, 431, 501, 505); an
//     unauthenticated one with 407 or 400 (or net/http's); an allowed,
//     authenticated CONNECT with 200, even when the client's FIN comes
//     right behind it (or net/http's); and never 403 or 407 to an allowed,
//     authenticated request;
//   - calls Check only with valid host names or IP literals, and only with
//     the target of one of the input's authenticated requests (the CONNECT
//     authority or the URL's host, never a Host header);
//   - calls Dial only for allowed.test:80 or :443 after Check allowed that
//     very host:port, and, for this input's connection, only for the target
//     of one of its allowed, authenticated requests: so nothing for an
//     input of denied, malformed or unauthenticated requests;
//   - tunnels an allowed CONNECT to allowed.test:443 (an echo server) with
//     the client's bytes after the request header echoed back exactly;
//   - forwards a plain-http request to allowed.test:80 with Host set to the
//     URL's authority and no Proxy-* header.
//
// No goroutine may be left once the proxies close at the end of the run.
func FuzzHTTPProxy(f *testing.F) {
	for _, s := range httpSeeds() {
		f.Add(s.auth, s.quiet, []byte(s.data))
	}
	h := newFuzzHarness(f, true)
	f.Fuzz(h.httpInput)
}

// httpInput is FuzzHTTPProxy's body: one client connection.
func (h *fuzzHarness) httpInput(t *testing.T, auth, quiet bool, data []byte) {
	if len(data) > 0 && (data[0] == 4 || data[0] == 5) {
		return // SOCKS: FuzzSOCKS5's business
	}
	if len(data) > fuzzMaxInput {
		data = data[:fuzzMaxInput]
	}
	s := h.server(auth)
	h.pol.reset()
	q := time.Duration(0)
	if quiet {
		q = fuzzQuiet
	}
	m := modelHTTP(data, auth)
	local, got, reset := fuzzExchange(t, s, data, q, func(got []byte) bool { return httpAnswered(m, data, got) })
	checks, dials := h.pol.events()
	checkBadDials(t, dials)
	checkChecks(t, checks)
	checkHTTPReplies(t, m, data, got, reset, auth)

	mayCheck, mayDial := map[string]bool{}, map[string]bool{}
	for _, r := range m.reqs {
		if r.target != "" && r.authorized {
			mayCheck[r.target] = true
		}
		if r.allowed {
			mayDial[r.target] = true
		}
	}
	for _, ev := range checks {
		if !mayCheck[ev.target] {
			t.Errorf("auth=%v input %q: Check saw %q, which is no authenticated request's target (%d requests)", auth, data, ev.target, len(m.reqs))
		}
	}
	for _, ev := range dials {
		if ev.client != local && ev.client != "" {
			continue // a late dial from an earlier input's connection
		}
		if !mayDial[ev.target] {
			t.Errorf("auth=%v input %q: Dial saw %q, which is no allowed request's target (%d requests)", auth, data, ev.target, len(m.reqs))
		}
		if !slices.ContainsFunc(checks, func(c fuzzEvent) bool { return c.ok && c.target == ev.target }) {
			t.Errorf("auth=%v input %q: Dial saw %q, which this input's Check calls did not allow", auth, data, ev.target)
		}
	}
}

// httpAnswered reports whether got holds a final response to each whole
// request of m (and, after an allowed CONNECT to the echo server, the
// echo), so that the client may half-close without cutting a request
// short. It is only a shortcut: the quiet period is the fallback.
func httpAnswered(m httpModel, data, got []byte) bool {
	br := bufio.NewReader(bytes.NewReader(got))
	for n := 0; n < m.complete; {
		mr := &m.reqs[n]
		res, err := http.ReadResponse(br, mr.req)
		if err != nil {
			return false
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != 101 {
			continue
		}
		if mr.connect && res.StatusCode == 200 {
			tunnel, _ := io.ReadAll(br)
			return mr.target == joinHostPort(fuzzHost, 443) && len(tunnel) >= len(data)-mr.end
		}
		if res.Close && res.Header.Get("Content-Length") == "" && res.TransferEncoding == nil {
			return false // ends with the connection
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return false
		}
		n++
	}
	return true
}

// checkHTTPReplies checks the responses the proxy sent for an input.
func checkHTTPReplies(t *testing.T, m httpModel, data, got []byte, reset, auth bool) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("auth=%v input %q:\ngot %q (reset %v):\n%s", auth, data, got, reset, fmt.Sprintf(format, args...))
	}
	br := bufio.NewReader(bytes.NewReader(got))
	i := 0 // the request being answered
	for first := true; ; first = false {
		if _, err := br.Peek(1); err != nil {
			return
		}
		var mr *httpModelReq
		var req *http.Request
		if i < len(m.reqs) {
			mr = &m.reqs[i]
			req = mr.req
		}
		head, _ := br.Peek(13)
		if !statusLineRE.Match(head) {
			if reset && len(head) < 13 {
				return // cut short
			}
			fail("response %d starts %q: want HTTP/1.1 and a 3-digit status", i, head)
		}
		if head[7] == '0' && (req == nil || req.ProtoAtLeast(1, 1)) {
			fail("response %d is HTTP/1.0 to a request that is not", i)
		}
		code, _ := strconv.Atoi(string(head[9:12]))
		if first {
			switch {
			case m.firstErr != nil:
				// 403 for a malformed host in a request line net/http
				// refuses: the proxy answers those itself, as denials.
				if code == 403 {
					// What dnsfilter.Malformed says: "malformed name: …",
					// "malformed IP literal: …", "ambiguous IP literal: …".
					if b, _ := io.ReadAll(io.LimitReader(bytes.NewReader(got), 4096)); !malformedDenial.Match(b) {
						fail("403 to a request http.ReadRequest refuses (%v) that does not say the host is malformed", m.firstErr)
					}
				} else if code != 400 && code != 431 && code != 501 {
					fail("status %d to a request http.ReadRequest refuses (%v): want 403 (malformed host), 400, 431 or 501", code, m.firstErr)
				}
			case !mr.authorized:
				if code != 407 && !slices.Contains(netHTTPStatuses, code) {
					fail("status %d to an unauthenticated request: want 407 or 400", code)
				}
			case !mr.allowed:
				if code != 403 && !slices.Contains(netHTTPStatuses, code) {
					fail("status %d to a request for %q, which is denied or malformed: want 403 or 400", code, mr.target)
				}
			case mr.connect:
				// Even with the client's FIN right behind the request.
				if code != 200 && !slices.Contains(netHTTPStatuses, code) {
					fail("status %d to an allowed, authenticated CONNECT %q: want 200", code, mr.target)
				}
			default:
				if code == 403 || code == 407 {
					fail("status %d to an allowed, authenticated request for %q", code, mr.target)
				}
			}
		}
		if code == 407 && mr != nil && mr.authorized {
			fail("status 407 to response %d, whose request has the right credentials", i)
		}
		res, err := http.ReadResponse(br, req)
		if err != nil {
			if reset {
				return
			}
			fail("response %d does not parse: %v", i, err)
		}
		if code >= 100 && code < 200 && code != 101 {
			continue // interim: the final response follows
		}
		if res.Close && res.Header.Get("Content-Length") == "" && res.TransferEncoding == nil {
			// Delimited by the close: net/http's own refusals (505,
			// 400, ...) are, and carry a body even to a HEAD.
			return
		}
		if mr != nil && mr.connect && code == 200 {
			tunnel, _ := io.ReadAll(br)
			if mr.target == joinHostPort(fuzzHost, 443) && !reset && !bytes.Equal(tunnel, data[mr.end:]) {
				fail("tunnel to the echo server returned %q, want %q", tunnel, data[mr.end:])
			}
			return
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return // a body cut short: the client's half-close cancelled the request
		}
		res.Body.Close()
		if mr != nil && res.Header.Get("X-Fuzz-Upstream-Host") != "" {
			if h := res.Header.Get("X-Fuzz-Upstream-Host"); h != mr.req.URL.Host {
				fail("upstream saw Host %q, want the URL's authority %q", h, mr.req.URL.Host)
			}
			if n := res.Header.Get("X-Fuzz-Upstream-Proxy-Headers"); n != "0" {
				fail("upstream saw %s Proxy-* headers", n)
			}
		}
		i++
	}
}

type httpSeed struct {
	auth, quiet bool
	data        string
}

// httpSeeds are hand-written HTTP proxy inputs: CONNECT and absolute-form
// requests allowed and denied, Host headers that disagree with the target,
// CR/LF and other bytes injected in targets, userinfo and fragments, IP
// literals in legacy forms, pipelining, bodies, authentication right and
// wrong, and oversized lines.
func httpSeeds() []httpSeed {
	basic := func(user, pass string) string {
		return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
	}
	login := basic(fuzzUser, fuzzPass)
	connect := func(target, headers string) string {
		return "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n" + headers + "\r\n"
	}
	get := func(url, headers string) string {
		authority, _, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
		return "GET " + url + " HTTP/1.1\r\nHost: " + authority + "\r\n" + headers + "\r\n"
	}
	var seeds []httpSeed
	add := func(auth, quiet bool, parts ...string) {
		seeds = append(seeds, httpSeed{auth, quiet, strings.Join(parts, "")})
	}

	// Allowed.
	add(false, true, connect("allowed.test:443", ""), "hello through the tunnel")
	add(false, false, connect("allowed.test:443", ""), "eager half-close")
	add(false, true, connect("allowed.test:443", "Content-Length: 5\r\n"), "body?and more")
	add(false, false, connect("allowed.test:443", "Expect: 100-continue\r\nContent-Length: 5\r\n"), "12345")
	add(false, true, connect("allowed.test:80", ""), "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	add(false, true, get("http://allowed.test/path?q=1", "Proxy-Secret: x\r\nConnection: X-Hop\r\nX-Hop: y\r\n"))
	add(false, false, get("http://allowed.test/", ""))
	add(false, true, "GET http://allowed.test:80/ HTTP/1.0\r\n\r\n")
	add(false, true, "HEAD http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	add(false, true, "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n\r\nhello\r\n\r\n")
	add(false, true, "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	add(false, true, "PUT http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
	add(false, true, get("http://allowed.test:443/", "")) // plain http to the echo server: 502
	add(false, true, get("http://allowed.test/a", ""), get("http://allowed.test/b", "Connection: close\r\n"))
	add(true, true, connect("allowed.test:443", login), "authenticated")
	add(true, true, get("http://allowed.test/", login))
	add(true, true, get("http://allowed.test/", "Proxy-Authorization: bAsIc   "+base64.StdEncoding.EncodeToString([]byte(fuzzUser+":"+fuzzPass))+"  \r\n"))
	// Host header and URL disagree: the target decides.
	add(false, true, "CONNECT allowed.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\nx")
	add(false, true, "CONNECT evil.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
	add(false, true, "GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	add(false, true, "GET http://allowed.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	add(false, true, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n")
	add(false, true, "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n") // origin-form
	add(false, true, "GET /http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	// Denied and malformed targets.
	for _, target := range []string{
		"evil.test:443", "allowed.test:22", "allowed.test:0", "allowed.test:0443", "allowed.test:65536",
		"allowed.test:-1", "allowed.test:+443", "allowed.test", ":443", "allowed.test:443/path",
		"http://allowed.test:443", "user@allowed.test:443", "ALLOWED.TEST:443", "allowed.test.:443",
		"[::1]:443", "[::ffff:127.0.0.1]:443", "[fe80::1%25eth0]:443", "127.0.0.1:443", "0x7f.0.0.1:443",
		"2130706433:443", "127.1:443", "0177.0.0.1:443", "100.100.100.100:80",
		"allowed.test%0d%0aHost:evil.test:443", "allowed.test\rX:443", "allowed.test\x00:443",
		"allowed.test:443\tX", "evil.test:443#@allowed.test:443",
	} {
		add(false, true, "CONNECT "+target+" HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
	}
	for _, url := range []string{
		"http://evil.test/", "http://allowed.test:22/", "http://allowed.test:0/", "http://allowed.test:/",
		"http://allowed.test:99999/", "https://allowed.test/", "ftp://allowed.test/", "HTTP://allowed.test/",
		"http://user:pass@allowed.test/", "http://allowed.test@evil.test/", "http://evil.test#@allowed.test/",
		"http://allowed.test#@evil.test/", "http://allowed.test%2f@evil.test/", "http://evil.test\\@allowed.test/",
		"http://[::1]/", "http://[::ffff:7f00:1]/", "http://127.0.0.1/", "http://0x7f.0.0.1/",
		"http://2130706433/", "http://127.1/", "http://allowed.test./", "http://ALLOWED.test/",
		"http://allowed.te%C5%9Ft/", "http://allowed.test%00/", "http:allowed.test/", "http:///allowed.test/",
		"//allowed.test/", "*",
	} {
		add(false, true, "GET "+url+" HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	}
	// CR/LF injection in the request line and headers.
	add(false, true, "CONNECT allowed.test:443\r\nHost: evil.test:443 HTTP/1.1\r\n\r\n")
	add(false, true, "CONNECT evil.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\nCONNECT allowed.test:443 HTTP/1.1\r\n\r\n")
	add(false, true, "GET http://evil.test/ HTTP/1.1\nHost: allowed.test\n\n")
	add(false, true, "GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\nX: a\rb\r\n\r\n")
	add(false, true, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n X-Folded: y\r\n\r\n")
	// Pipelining: an allowed request after a denied one and vice versa.
	add(false, true, get("http://evil.test/", ""), get("http://allowed.test/", ""))
	add(false, true, get("http://allowed.test/", ""), get("http://evil.test/", ""), connect("allowed.test:443", ""), "tunnel")
	add(false, true, "POST http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 38\r\n\r\n", get("http://allowed.test/", ""))
	add(false, true, "POST http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 0\r\n\r\n\r\n", get("http://allowed.test/", ""))
	// Request smuggling shapes: both framing headers, bad chunking.
	add(false, true, "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	add(false, true, "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
	add(false, true, "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
	add(false, true, "POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
	// Versions, Expect, authentication.
	add(false, true, "GET http://evil.test/ HTTP/1.0\r\n\r\n")
	add(false, true, "GET http://allowed.test/ HTTP/2.0\r\nHost: allowed.test\r\n\r\n")
	add(false, true, "GET http://allowed.test/ HTTP/0.9\r\n\r\n")
	add(false, true, "GET http://allowed.test/\r\n\r\n")
	add(false, true, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	add(false, true, "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\nExpect: teapot\r\n\r\n")
	add(true, true, connect("allowed.test:443", ""))
	add(true, true, connect("allowed.test:443", basic(fuzzUser, "wrong")), connect("allowed.test:443", login), "second try")
	add(true, true, connect("evil.test:443", login))
	add(true, true, get("http://allowed.test/", "Proxy-Authorization: Bearer "+fuzzPass+"\r\n"))
	add(true, true, get("http://allowed.test/", "Proxy-Authorization: Basic !!!\r\n"))
	add(true, true, get("http://allowed.test/", "Proxy-Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte(fuzzUser+fuzzPass))+"\r\n"))
	// Garbage and oversized lines.
	add(false, true)
	add(false, true, "\r\n\r\n")
	add(false, true, "GET")
	add(false, true, "CONNECT allowed.test:443 HTTP/1.1\r\n") // header never ends
	add(false, true, "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
	// Longer lines, beyond MaxHeaderBytes included, are in
	// TestFuzzLongInputs: the fuzzer's minimizer takes time quadratic in an
	// input's length.
	return seeds
}

// TestHTTPConnectHalfClose checks that a CONNECT client may send its
// request, its first bytes and a FIN at once: the half-close reaches the
// target, whose answer still flows back. (FuzzHTTPProxy found that the
// dial used the request's context, which net/http cancels on the FIN, so
// such a client got 502.)
func TestHTTPConnectHalfClose(t *testing.T) {
	fn := newFakeNet()
	ts := newTCPServer(t, func(c net.Conn) {
		var buf bytes.Buffer
		buf.ReadFrom(c) // until the client's CloseWrite
		c.Write(bytes.ToUpper(buf.Bytes()))
	})
	fn.add("upper.test", ts.addr())
	s := startProxy(t, fn, Config{})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	mustWrite(t, c, []byte("CONNECT upper.test:1 HTTP/1.1\r\nHost: upper.test:1\r\n\r\nshout"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "HTTP/1.1 200 Connection established\r\n\r\nSHOUT"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	waitFor(t, "bytes counted", func() bool {
		st := s.Stats()
		return st.Allowed == 1 && st.BytesUp == 5 && st.BytesDown == 5 && st.Active == 0
	})
}

// TestFuzzLongInputs puts inputs too long to be good fuzz seeds (the
// fuzzer's minimizer takes time quadratic in an input's length) through the
// fuzz targets' checks: 255-byte SOCKS5 fields, names beyond 253 bytes,
// headers beyond MaxHeaderBytes (431), and tunnels and refusals with far
// more data than the proxy's buffers.
func TestFuzzLongInputs(t *testing.T) {
	greet := "\x05\x01\x00\x05\x01\x00\x03\x0c" + fuzzHost
	name := func(host string) string {
		return "\x05\x01\x00\x05\x01\x00\x03" + string([]byte{byte(len(host))}) + host + "\x01\xbb"
	}
	hs := newFuzzHarness(t, false)
	for _, data := range []string{
		greet + "\x01\xbb" + strings.Repeat("0123456789abcdef", 8192),
		"\x05\x01\x00\x05\x01\x00\x03\x09evil.test\x01\xbb" + strings.Repeat("x", 100<<10),
		"\x04\x01\x00\x50\x7f\x00\x00\x01\x00" + strings.Repeat("x", 100<<10),
		"\x05\xff" + strings.Repeat("\x00", 255) + greet[3:] + "\x01\xbbhi",
		name(strings.Repeat("a.", 126) + "t"),  // 253 bytes: allowed to reach policy
		name(strings.Repeat("a.", 126) + "tt"), // 254 bytes
		name(strings.Repeat("b", 255)),
		name(strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("e", 63) + "." + strings.Repeat("f", 61)),
	} {
		hs.socks5Input(t, false, []byte(data))
	}
	for _, data := range []string{
		"\x05\xff" + strings.Repeat("\x01", 254) + "\x02\x01\x09" + fuzzUser + "\x09" + fuzzPass + greet[3:] + "\x01\xbb",
		"\x05\x01\x02\x01\xff" + strings.Repeat("u", 255) + "\xff" + strings.Repeat("p", 255) + greet[3:] + "\x01\xbb",
	} {
		hs.socks5Input(t, true, []byte(data))
	}
	hh := newFuzzHarness(t, true)
	for _, data := range []string{
		"GET http://allowed.test/" + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		"GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\n\r\n",
		"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\nX-Big: " + strings.Repeat("b", 60<<10) + "\r\n\r\n",
		"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n" + strings.Repeat("tunnel data ", 10<<10),
		"POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 102400\r\n\r\n" + strings.Repeat("p", 100<<10),
		"GET http://allowed.test/" + strings.Repeat("a", 2000) + " HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
		"CONNECT " + strings.Repeat("a.", 200) + "test:443 HTTP/1.1\r\n\r\n",
		"GET http://" + strings.Repeat("a.", 126) + "t/ HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		for _, quiet := range []bool{true, false} {
			hh.httpInput(t, false, quiet, []byte(data))
		}
	}
}

// TestFuzzModels spot-checks the fuzz targets' models against replies and
// decisions written out by hand, so that a wrong model cannot hide a bug.
func TestFuzzModels(t *testing.T) {
	e := modelSOCKS5([]byte("\x05\x01\x00\x05\x01\x00\x03\x0callowed.test\x01\xbbhi"), false)
	if !bytes.Equal(e.reply, []byte{5, 0}) || !e.success || e.dial != "allowed.test:443" || string(e.tunnel) != "hi" {
		t.Errorf("allowed CONNECT: %+v", e)
	}
	e = modelSOCKS5([]byte("\x05\x01\x00\x05\x01\x00\x03\x09evil.test\x01\xbb"), false)
	if !bytes.Equal(e.reply, []byte{5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}) || e.dial != "" || e.check != "evil.test:443" {
		t.Errorf("denied CONNECT: %+v", e)
	}
	e = modelSOCKS5([]byte("\x05\x01\x02\x01\x09fuzz-user\x05wrong\x05\x01\x00\x03\x0callowed.test\x01\xbb"), true)
	if !bytes.Equal(e.reply, []byte{5, 2, 1, 1}) || e.dial != "" || e.check != "" {
		t.Errorf("wrong password: %+v", e)
	}
	e = modelSOCKS5([]byte("\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"), false)
	if !bytes.Equal(e.reply, []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}) || e.check != "" {
		t.Errorf("BIND: %+v", e)
	}

	m := modelHTTP([]byte("GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\nCONNECT allowed.test:443 HTTP/1.1\r\n\r\ntail"), false)
	if len(m.reqs) != 2 || m.reqs[0].target != "evil.test:80" || m.reqs[0].allowed ||
		m.reqs[1].target != "allowed.test:443" || !m.reqs[1].allowed || !m.reqs[1].connect {
		t.Fatalf("pipelined: %+v", m)
	}
	if got := "GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\nCONNECT allowed.test:443 HTTP/1.1\r\n\r\ntail"[m.reqs[1].end:]; got != "tail" {
		t.Errorf("pipelined: tunnel data %q", got)
	}
	m = modelHTTP([]byte("CONNECT allowed.test:443 HTTP/1.1\r\n\r\n"), true)
	if len(m.reqs) != 1 || m.reqs[0].authorized || m.reqs[0].allowed {
		t.Errorf("unauthenticated CONNECT: %+v", m)
	}
	m = modelHTTP([]byte("GET http://allowed.test\x00/ HTTP/1.1\r\n\r\n"), false)
	if m.firstErr == nil {
		t.Errorf("NUL in the URL: parsed %+v", m)
	}
}
