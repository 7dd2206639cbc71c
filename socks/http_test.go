package socks

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// proxyClient is an http.Client that uses s as its proxy for every URL.
func proxyClient(t *testing.T, s *Server, user *url.Userinfo, base *http.Transport) *http.Client {
	t.Helper()
	var tr *http.Transport
	if base != nil {
		tr = base.Clone()
	} else {
		tr = &http.Transport{}
	}
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: s.Addr().String(), User: user})
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHTTPForward(t *testing.T) {
	fn := newFakeNet()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "proxy-") || k == "X-Hop" {
				t.Errorf("upstream received header %s: %q", k, r.Header[k])
			}
		}
		if r.Host != "web.test" {
			t.Errorf("upstream Host = %q, want web.test", r.Host)
		}
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	}))
	defer upstream.Close()
	fn.add("web.test", upstream.Listener.Addr().String())

	for _, tc := range []struct {
		name       string
		user, pass string
	}{
		{name: "no auth"},
		{name: "auth", user: "agent", pass: "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startProxy(t, fn, Config{Username: tc.user, Password: tc.pass})
			var ui *url.Userinfo
			if tc.user != "" {
				ui = url.UserPassword(tc.user, tc.pass)
			}
			c := proxyClient(t, s, ui, nil)
			req, _ := http.NewRequest("POST", "http://web.test/path?q=1", strings.NewReader("payload"))
			req.Header.Set("Proxy-Secret", "do not forward")
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "hop-by-hop")
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if got := readBody(t, res); res.StatusCode != 200 || got != "POST /path?q=1 payload" {
				t.Fatalf("got %d %q", res.StatusCode, got)
			}

			if tc.user == "" {
				return
			}
			// Without credentials, and with wrong ones: 407.
			for _, ui := range []*url.Userinfo{nil, url.UserPassword(tc.user, "wrong")} {
				res, err := proxyClient(t, s, ui, nil).Get("http://web.test/")
				if err != nil {
					t.Fatal(err)
				}
				readBody(t, res)
				if res.StatusCode != http.StatusProxyAuthRequired || res.Header.Get("Proxy-Authenticate") != `Basic realm="tsconnect"` {
					t.Errorf("got %d, Proxy-Authenticate %q", res.StatusCode, res.Header.Get("Proxy-Authenticate"))
				}
			}
		})
	}
}

func TestHTTPConnectTLS(t *testing.T) {
	fn := newFakeNet()
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("Proxy-Authorization reached the target")
		}
		io.WriteString(w, "secure hello")
	}))
	defer upstream.Close()
	fn.add("tls.test:443", upstream.Listener.Addr().String())
	s := startProxy(t, fn, Config{Username: "agent", Password: "s3cret"})

	base := upstream.Client().Transport.(*http.Transport).Clone()
	base.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
	res, err := proxyClient(t, s, url.UserPassword("agent", "s3cret"), base).Get("https://tls.test/")
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, res); got != "secure hello" {
		t.Fatalf("got %q", got)
	}
	if got := fn.dials(); !slices.Equal(got, []string{"tls.test:443"}) {
		t.Errorf("Dial saw %q", got)
	}

	// Without credentials the CONNECT gets 407.
	_, err = proxyClient(t, s, nil, base).Get("https://tls.test/")
	if err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
		t.Errorf("err = %v, want Proxy Authentication Required", err)
	}
}

// rawHTTP sends req on a new connection to s and returns the response.
func rawHTTP(t *testing.T, s *Server, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	mustWrite(t, c, []byte(req))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", req, err)
	}
	return res, readBody(t, res)
}

func TestHTTPErrors(t *testing.T) {
	fn := newFakeNet()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	fn.add("evil.example.com", upstream.Listener.Addr().String())
	fn.deny["evil.example.com"] = "no rule matches"
	fn.deny["ruled.test"] = "ruled.test:443"
	fn.add("refused.test", closedPort(t))
	s := startProxy(t, fn, Config{DialTimeout: 200 * time.Millisecond})

	for _, tc := range []struct {
		name     string
		req      string
		code     int
		wantBody string
	}{
		{"connect denied", "CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n", 403,
			`tsconnect: "evil.example.com:443" not allowed: no rule matches`},
		{"get denied", "GET http://evil.example.com/ HTTP/1.1\r\nHost: evil.example.com\r\n\r\n", 403,
			`tsconnect: "evil.example.com:80" not allowed: no rule matches`},
		{"get denied by a rule", "GET http://ruled.test/ HTTP/1.1\r\nHost: ruled.test\r\n\r\n", 403,
			`tsconnect: "ruled.test:80" not allowed by allowlist rule: ruled.test:443`},
		{"connect dial denied", "CONNECT late-deny.test:443 HTTP/1.1\r\n\r\n", 403, "allowlist rule: no route"},
		{"connect refused", "CONNECT refused.test:80 HTTP/1.1\r\n\r\n", 502, "cannot connect"},
		{"get refused", "GET http://refused.test/ HTTP/1.1\r\nHost: refused.test\r\n\r\n", 502, "cannot connect"},
		{"connect timeout", "CONNECT slow.test:443 HTTP/1.1\r\n\r\n", 504, "timed out"},
		{"get timeout", "GET http://slow.test/ HTTP/1.1\r\nHost: slow.test\r\n\r\n", 504, "timed out"},
		{"get unknown host", "GET http://nxdomain.test/ HTTP/1.1\r\nHost: nxdomain.test\r\n\r\n", 502, "no such host"},
		{"origin form", "GET / HTTP/1.1\r\nHost: web.test\r\n\r\n", 400, "not a web server"},
		{"options asterisk", "OPTIONS * HTTP/1.1\r\nHost: web.test\r\n\r\n", 400, "not a web server"},
		{"https absolute form", "GET https://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n", 400, "CONNECT"},
		{"connect no port", "CONNECT web.test HTTP/1.1\r\n\r\n", 400, ""},
		{"connect path", "CONNECT /web.test:443 HTTP/1.1\r\nHost: web.test\r\n\r\n", 403, "malformed name"},
		{"connect CR in target", "CONNECT web.test\r:443 HTTP/1.1\r\n\r\n", 403, `"web.test\r:443" not allowed: malformed name`},
		{"connect CRLF injection", "CONNECT web.test:443\r\nHost: x HTTP/1.1\r\n\r\n", 400, "malformed request line: no HTTP version"},
		{"connect escaped CRLF", "CONNECT web.test%0d%0a:443 HTTP/1.1\r\n\r\n", 403, "malformed name"},
		{"connect space", "CONNECT web.test :443 HTTP/1.1\r\n\r\n", 403, `"web.test :443" not allowed: malformed name`},
		{"connect bracketed name", "CONNECT [web.test]:443 HTTP/1.1\r\n\r\n", 403, "malformed name"},
		{"connect zone", "CONNECT [fe80::1%eth0]:443 HTTP/1.1\r\n\r\n", 403, "malformed name"},
		{"connect bad port", "CONNECT web.test:+443 HTTP/1.1\r\n\r\n", 400, `bad CONNECT target "web.test:+443"`},
		{"get NUL in host", "GET http://web.test%00/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, `"web.test%00:80" not allowed: malformed name`},
		{"get fragment in host", "GET http://evil.test#@web.test/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, "malformed name"},
		{"get bad escape in path", "GET http://web.test/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, `malformed request line: parse "http://web.test/%zz": invalid URL escape "%zz"`},
		{"get no version", "GET http://web.test/\r\n\r\n", 400, "no HTTP version"},
		{"TLS to the proxy", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400, "use http:// in the proxy URL"},
		{"connect userinfo", "CONNECT user@web.test:443 HTTP/1.1\r\n\r\n", 403, "malformed name"},
		{"get bad host", "GET http://we_b!.test/ HTTP/1.1\r\nHost: x\r\n\r\n", 403, "malformed name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fn.dials())
			res, body := rawHTTP(t, s, tc.req)
			if res.StatusCode != tc.code || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", res.StatusCode, body, tc.code, tc.wantBody)
			}
			if tc.code == 400 || tc.code == 403 && !strings.Contains(tc.name, "dial") {
				if got := fn.dials()[before:]; len(got) != 0 {
					t.Errorf("Dial was called: %q", got)
				}
			}
		})
	}
}

// TestHTTPBadBody: a request body the proxy cannot read (a chunk size line
// ending with a bare LF) is the client's error: 400 saying so, and an
// audit line that says the client's body broke, not that the target could
// not be reached.
func TestHTTPBadBody(t *testing.T) {
	fn := newFakeNet()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer upstream.Close()
	fn.add("web.test", upstream.Listener.Addr().String())
	audit := new(lockedBuffer)
	s := startProxy(t, fn, Config{Audit: audit.record})
	res, body := rawHTTP(t, s, "POST http://web.test/ HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n")
	if res.StatusCode != 400 || !strings.HasPrefix(body, "tsconnect: bad request body: ") {
		t.Errorf("got %d %q, want 400 naming the bad body", res.StatusCode, body)
	}
	s.Close()
	var rec AuditRecord
	if err := json.Unmarshal([]byte(audit.String()), &rec); err != nil {
		t.Fatalf("audit %q: %v", audit.String(), err)
	}
	if rec.Decision != "allow" || !strings.HasPrefix(rec.Error, "reading the client's request body: ") || rec.Resolved != upstream.Listener.Addr().String() {
		t.Errorf("audit line %+v: want allow (the request reached web.test), with the body's error", rec)
	}
}

// TestHTTPHostMismatch: the URL's host is the one checked and dialed; a
// Host header naming another is not.
func TestHTTPHostMismatch(t *testing.T) {
	fn := newFakeNet()
	var gotHost string
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost = r.Host
		io.WriteString(w, "allowed")
	}))
	defer allowed.Close()
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("request reached the denied host")
	}))
	defer denied.Close()
	fn.add("allowed.test", allowed.Listener.Addr().String())
	fn.add("denied.test", denied.Listener.Addr().String())
	fn.deny["denied.test"] = "no rule matches"
	s := startProxy(t, fn, Config{})

	res, body := rawHTTP(t, s, "GET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n")
	if res.StatusCode != 200 || body != "allowed" {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	if gotHost != "allowed.test" {
		t.Errorf("upstream Host = %q, want allowed.test", gotHost)
	}
	if got := fn.checks(); !slices.Equal(got, []string{"allowed.test:80"}) {
		t.Errorf("Check saw %q", got)
	}
	if got := fn.dials(); !slices.Equal(got, []string{"allowed.test:80"}) {
		t.Errorf("Dial saw %q", got)
	}

	// And CONNECT tunnels to the request-line target, not the Host header.
	res, _ = rawHTTP(t, s, "CONNECT denied.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n")
	if res.StatusCode != 403 {
		t.Errorf("CONNECT denied.test with Host: allowed.test: got %d, want 403", res.StatusCode)
	}
}

// TestHTTPConnectPipelined: bytes the client sends right behind its CONNECT
// header (before reading the 200) reach the target.
func TestHTTPConnectPipelined(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	s := startProxy(t, fn, Config{})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	mustWrite(t, c, []byte("CONNECT echo.test:7 HTTP/1.1\r\nHost: echo.test:7\r\n\r\nearly bytes"))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Status != "200 Connection established" {
		t.Fatalf("status %q", res.Status)
	}
	got := make([]byte, len("early bytes"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early bytes" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

// TestHTTPKeepAliveChecksEachRequest: a pooled upstream connection does not
// bypass Check for later requests.
func TestHTTPKeepAliveChecksEachRequest(t *testing.T) {
	fn := newFakeNet()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	fn.add("web.test", upstream.Listener.Addr().String())
	s := startProxy(t, fn, Config{})
	c := proxyClient(t, s, nil, nil)
	for i := range 3 {
		res, err := c.Get("http://web.test/")
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, res)
		if res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, res.StatusCode)
		}
	}
	fn.mu.Lock()
	fn.deny["web.test"] = "revoked"
	fn.mu.Unlock()
	res, err := c.Get("http://web.test/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, res); res.StatusCode != 403 || !strings.Contains(body, "revoked") {
		t.Errorf("after revoking: %d %q", res.StatusCode, body)
	}
	if n := len(fn.checks()); n != 4 {
		t.Errorf("Check called %d times, want 4", n)
	}
}
