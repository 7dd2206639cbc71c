package socks

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

func TestListenAddress(t *testing.T) {
	dial := newFakeNet().Dial
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "loopback v4", cfg: Config{Addr: "127.0.0.1:0"}},
		{name: "localhost", cfg: Config{Addr: "localhost:0"}},
		{name: "all interfaces", cfg: Config{Addr: ":0"}, wantErr: "not a loopback address"},
		{name: "0.0.0.0", cfg: Config{Addr: "0.0.0.0:0"}, wantErr: "not a loopback address"},
		{name: "::", cfg: Config{Addr: "[::]:0"}, wantErr: "not a loopback address"},
		{name: "a name", cfg: Config{Addr: "example.com:0"}, wantErr: "not a loopback address"},
		{name: "allowed without credentials", cfg: Config{Addr: "0.0.0.0:0", AllowNonLoopback: true}, wantErr: "without proxy authentication"},
		{name: "allowed with credentials", cfg: Config{Addr: "0.0.0.0:0", AllowNonLoopback: true, Username: "u", Password: "p"}},
		{name: "credentials without AllowNonLoopback", cfg: Config{Addr: "0.0.0.0:0", Username: "u", Password: "p"}, wantErr: "not a loopback address"},
		{name: "user without password", cfg: Config{Addr: "127.0.0.1:0", Username: "u"}, wantErr: "both"},
		{name: "no port", cfg: Config{Addr: "127.0.0.1"}, wantErr: "bad Config.Addr"},
		{name: "no dial", cfg: Config{Addr: "127.0.0.1:0"}, wantErr: "Dial is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "no dial" {
				tc.cfg.Dial = dial
			}
			s, err := Listen(tc.cfg)
			if tc.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("Listen(%q) succeeded", tc.cfg.Addr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ap := s.Addr().(*net.TCPAddr); ap.Port == 0 {
				t.Errorf("Addr() = %v: no port", ap)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := s.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close = %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestHandshakeTimeout: clients that never finish their SOCKS5 handshake or
// HTTP request header are dropped, and others are served meanwhile.
func TestHandshakeTimeout(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	const timeout = 300 * time.Millisecond
	s := startProxy(t, fn, Config{HandshakeTimeout: timeout})

	slow := map[string]string{
		"silent":              "",
		"socks5 greeting":     "\x05",
		"socks5 request":      "\x05\x01\x00",
		"http first byte":     "G",
		"http partial":        "GET http://echo.test/ HTTP/1.1\r\nHost: echo.test\r\n",
		"http connect no end": "CONNECT echo.test:7 HTTP/1.1\r\n",
	}
	conns := map[string]net.Conn{}
	start := time.Now()
	for name, msg := range slow {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if msg != "" {
			mustWrite(t, c, []byte(msg))
		}
		conns[name] = c
	}
	// Served while the slow ones hang.
	d, _ := proxy.SOCKS5("tcp", s.Addr().String(), nil, proxy.Direct)
	c, err := d.Dial("tcp", "echo.test:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "not blocked by slow clients")

	for name, c := range conns {
		t.Run(name, func(t *testing.T) {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("still connected after %v", time.Since(start))
			}
			if name == "socks5 request" && string(b) != "\x05\x00" {
				t.Errorf("got %q before close", b)
			}
		})
	}
	// Dropped, not timed out (each subtest), and not before the timeout.
	// How soon after it is the scheduler's business, not the proxy's
	// promise; the 3 s read deadline bounds it.
	if el := time.Since(start); el < timeout {
		t.Errorf("slow clients dropped after %v, before the %v handshake timeout", el, timeout)
	}
	roundTrip(t, c, "still fine")
}

func TestMaxConns(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	s := startProxy(t, fn, Config{MaxConns: 1})
	addr := s.Addr().String()

	first := socksDial(t, addr, "", "")
	if got := socksRequest(t, first, 1, "echo.test", 7); got != 0 {
		t.Fatalf("reply = 0x%02x", got)
	}
	roundTrip(t, first, "holding the only slot")

	t.Run("socks5 refused", func(t *testing.T) {
		c := socksDial(t, addr, "", "")
		if got := socksRequest(t, c, 1, "echo.test", 7); got != 0x01 {
			t.Fatalf("reply = 0x%02x, want 0x01", got)
		}
		expectClosed(t, c)
	})
	t.Run("http refused", func(t *testing.T) {
		res, body := rawHTTP(t, s, "GET http://echo.test/ HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		if res.StatusCode != 503 || !strings.Contains(body, "MaxConns") {
			t.Fatalf("got %d %q", res.StatusCode, body)
		}
	})
	if n := es.accepts.Load(); n != 1 {
		t.Errorf("target accepted %d connections, want 1", n)
	}
	if st := s.Stats(); st.Refused != 2 || st.Active != 1 {
		t.Errorf("stats = %+v, want Refused 2, Active 1", st)
	}

	first.Close()
	waitFor(t, "slot released", func() bool { return s.Stats().Active == 0 })
	c := socksDial(t, addr, "", "")
	if got := socksRequest(t, c, 1, "echo.test", 7); got != 0 {
		t.Fatalf("after release: reply = 0x%02x", got)
	}
	roundTrip(t, c, "slot is free again")
}

// TestMaxConnsEvictsIdle: a connection that sends nothing or stalls its
// handshake holds a slot only until a client needs it: at MaxConns a new
// client takes the slot of the one idle longest, which is closed. Busy
// tunnels are never evicted; with every slot busy, a client is refused.
func TestMaxConnsEvictsIdle(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	audit := new(lockedBuffer)
	// No handshake timeout to speak of: only eviction frees the slots.
	s := startProxy(t, fn, Config{MaxConns: 3, HandshakeTimeout: time.Hour, Audit: audit.record})
	addr := s.Addr().String()
	tunnel := func(what string) net.Conn {
		t.Helper()
		c := socksDial(t, addr, "", "")
		if got := socksRequest(t, c, 1, "echo.test", 7); got != 0 {
			t.Fatalf("%s: reply 0x%02x", what, got)
		}
		roundTrip(t, c, what)
		return c
	}

	busy := tunnel("busy")
	silent, err := net.Dial("tcp", addr) // sends nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, "silent admitted", func() bool { return s.Stats().Active == 2 })
	stalled := socksDial(t, addr, "", "") // greeting, then no request
	waitFor(t, "stalled admitted", func() bool { return s.Stats().Active == 3 })

	tunnel("takes the silent one's slot")
	expectClosed(t, silent)
	tunnel("takes the stalled one's slot")
	expectClosed(t, stalled)

	c := socksDial(t, addr, "", "")
	if got := socksRequest(t, c, 1, "echo.test", 7); got != 0x01 {
		t.Errorf("every slot busy: reply 0x%02x, want 0x01", got)
	}
	roundTrip(t, busy, "the busy tunnel was never evicted")
	if st := s.Stats(); st.Evicted != 2 || st.Refused != 1 || st.Active != 3 {
		t.Errorf("stats = %+v, want Evicted 2, Refused 1, Active 3", st)
	}
	s.Close()
	if !strings.Contains(audit.String(), errEvicted.Error()) {
		t.Errorf("no audit line says the silent connection was evicted:\n%s", audit)
	}
}

// TestCloseEndsEverything: Close ends SOCKS5 and CONNECT tunnels, idle
// keep-alive and half-done connections, and leaves no goroutines behind.
func TestCloseEndsEverything(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	fn.add("web.test", upstream.Listener.Addr().String())

	leaks := checkGoroutines(t)
	s, err := Listen(Config{Addr: "127.0.0.1:0", Dial: fn.Dial, Check: fn.Check, Audit: func(AuditRecord) {}})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()

	socksTunnel := socksDial(t, addr, "", "")
	if got := socksRequest(t, socksTunnel, 1, "echo.test", 7); got != 0 {
		t.Fatalf("reply = 0x%02x", got)
	}
	roundTrip(t, socksTunnel, "socks tunnel up")

	connectTunnel, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer connectTunnel.Close()
	mustWrite(t, connectTunnel, []byte("CONNECT echo.test:7 HTTP/1.1\r\n\r\n"))
	br := bufio.NewReader(connectTunnel)
	res, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", res, err)
	}
	mustWrite(t, connectTunnel, []byte("connect tunnel up"))
	if b, _ := br.Peek(len("connect tunnel up")); string(b) != "connect tunnel up" {
		t.Fatalf("echo = %q", b)
	}

	keepAlive, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer keepAlive.Close()
	mustWrite(t, keepAlive, []byte("GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n"))
	kbr := bufio.NewReader(keepAlive)
	res, err = http.ReadResponse(kbr, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)

	halfDone, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer halfDone.Close()
	mustWrite(t, halfDone, []byte{5})

	waitFor(t, "all connections active", func() bool { return s.Stats().Active == 4 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{socksTunnel, connectTunnel, keepAlive, halfDone} {
		expectClosed(t, c)
		c.Close()
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	if st := s.Stats(); st.Active != 0 {
		t.Errorf("Active = %d after Close", st.Active)
	}
	upstream.CloseClientConnections()
	leaks()
}

func TestAudit(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	fn.deny["evil.test"] = "no rule matches"
	fn.deny["ruled.test"] = "ruled.test:443"
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer upstream.Close()
	fn.add("web.test", upstream.Listener.Addr().String())
	audit := new(lockedBuffer)
	s, err := Listen(Config{Addr: "127.0.0.1:0", Dial: fn.Dial, Check: fn.Check, Audit: audit.record})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addr().String()

	// One connection at a time, so that the lines come in order.
	settle := func() { waitFor(t, "connection done", func() bool { return s.Stats().Active == 0 }) }
	c := socksDial(t, addr, "", "")
	socksRequest(t, c, 1, "echo.test", 7)
	roundTrip(t, c, "12345")
	c.Close()
	settle()
	c = socksDial(t, addr, "", "")
	socksRequest(t, c, 1, "evil.test", 443)
	c.Close()
	settle()
	rawHTTP(t, s, "GET http://web.test/x HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
	settle()
	rawHTTP(t, s, "CONNECT refused.test:1 HTTP/1.1\r\n\r\n")
	settle()
	rawHTTP(t, s, "GET /\r\n\r\n") // malformed: no HTTP version
	settle()
	rawHTTP(t, s, "CONNECT ruled.test:22 HTTP/1.1\r\n\r\n")
	settle()
	rawHTTP(t, s, "CONNECT ruled.test%00:22 HTTP/1.1\r\n\r\n") // one net/http refuses
	settle()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	want := []struct{ protocol, host, decision, rule, reason string }{
		{"socks5", "echo.test", "allow", "", ""},
		{"socks5", "evil.test", "deny", "", "no rule matches"},
		{"http", "web.test", "allow", "", ""},
		{"http-connect", "refused.test", "error", "", ""},
		{"http", "", "error", "", ""},
		{"http-connect", "ruled.test", "deny", "ruled.test:443", "port 22 not in the rule"},
		{"http-connect", "ruled.test%00", "deny", "", "malformed name: name has '%'"},
	}
	lines := strings.Split(strings.TrimSuffix(audit.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d audit lines, want %d:\n%s", len(lines), len(want), audit.String())
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d not JSON: %v\n%s", i, err, line)
		}
		for _, k := range []string{"time", "client", "protocol", "host", "port", "resolved", "decision", "rule", "bytes_up", "bytes_down", "duration_ms"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %q: %s", i, k, line)
			}
		}
		var r AuditRecord
		json.Unmarshal([]byte(line), &r)
		if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil {
			t.Errorf("line %d time: %v", i, err)
		}
		if _, err := net.ResolveTCPAddr("tcp", r.Client); err != nil {
			t.Errorf("line %d client %q: %v", i, r.Client, err)
		}
		w := want[i]
		if r.Protocol != w.protocol || r.Host != w.host || r.Decision != w.decision || r.Rule != w.rule || r.Reason != w.reason {
			t.Errorf("line %d = %s\nwant protocol %q host %q decision %q rule %q reason %q", i, line, w.protocol, w.host, w.decision, w.rule, w.reason)
		}
		if (r.Decision == "allow") == (r.Error != "") {
			t.Errorf("line %d: decision %q with error %q", i, r.Decision, r.Error)
		}
	}
	var first AuditRecord
	json.Unmarshal([]byte(lines[0]), &first)
	if first.BytesUp != 5 || first.BytesDown != 5 || first.Resolved != es.addr() || first.Port != 7 {
		t.Errorf("first line = %+v", first)
	}
	var third AuditRecord
	json.Unmarshal([]byte(lines[2]), &third)
	if third.BytesDown != 5 || third.Resolved != upstream.Listener.Addr().String() {
		t.Errorf("http line = %+v", third)
	}
	if st := s.Stats(); st.Allowed != 2 || st.Denied != 3 || st.Failed != 2 || st.BytesUp != 5 || st.BytesDown != 10 {
		t.Errorf("stats = %+v", st)
	}
}
