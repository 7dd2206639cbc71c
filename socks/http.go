package socks

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type connKey struct{} // request context key: the *clientConn
type fwdKey struct{}  // request context key: the *forwardState

func (s *Server) initHTTP() {
	s.tr = &http.Transport{
		Proxy:              nil, // never the environment's proxy
		DialContext:        s.dial,
		DisableCompression: true, // pass bodies through as they are
		MaxIdleConns:       256,
		// Keep-alive connections to targets are shared by all clients; Check
		// still runs on every request before one is used.
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       httpKeepAliveIdle,
		ExpectContinueTimeout: time.Second,
	}
	s.rp = &httputil.ReverseProxy{
		Rewrite:      rewriteForward,
		Transport:    s.tr,
		ErrorLog:     s.errorLog,
		ErrorHandler: s.forwardError,
	}
	idle := httpKeepAliveIdle
	if s.cfg.IdleTimeout > 0 && s.cfg.IdleTimeout < idle {
		idle = s.cfg.IdleTimeout
	}
	s.httpSrv = &http.Server{
		Handler:           httpHandler{s},
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    64 << 10,
		// "OPTIONS *" is asked of the proxy itself: answer it like any
		// other request that is not for a target (400), and audit it,
		// rather than with net/http's silent 200.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     s.errorLog,
		BaseContext:                  func(net.Listener) context.Context { return s.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: s.httpConnState,
	}
}

// httpConnState releases HTTP client connections: http.Server reports
// StateClosed from the end of the goroutine serving a connection. A hijacked
// connection reports no StateClosed; the handler releases it instead.
func (s *Server) httpConnState(c net.Conn, state http.ConnState) {
	cc, ok := c.(*clientConn)
	if !ok {
		return
	}
	switch state {
	case http.StateActive:
		cc.idleSince.Store(0)
	case http.StateIdle:
		cc.idleSince.Store(time.Now().UnixNano())
	case http.StateHijacked:
		cc.hijacked.Store(true)
	case http.StateClosed:
		if cc.requests.Load() == 0 {
			rec := s.newRecord(cc, "http", cc.start)
			rec.fail(errors.New("connection ended without a valid HTTP request (malformed, incomplete within HandshakeTimeout, or empty)"))
			s.finish(rec)
		}
		cc.Close()
		cc.release()
	}
}

type httpHandler struct{ s *Server }

func (h httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cc := r.Context().Value(connKey{}).(*clientConn)
	cc.requests.Add(1)
	defer func() {
		if cc.hijacked.Load() {
			cc.Close()
			cc.release()
		}
	}()
	if r.Method == http.MethodConnect {
		h.s.serveConnect(w, r, cc)
		return
	}
	h.s.serveForward(w, r, cc)
}

// serveConnect serves CONNECT host:port by splicing the hijacked client
// connection to the target.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request, cc *clientConn) {
	rec := s.newRecord(cc, "http-connect", time.Now())
	defer s.finish(rec)
	// The target is the request line's authority, exactly as sent; a Host
	// header plays no part.
	host, port, err := splitTarget(r.RequestURI)
	if err != nil {
		rec.fail(err)
		w.Header().Set("Connection", "close")
		httpError(w, http.StatusBadRequest, "tsconnect: bad CONNECT target %q: want host:port, e.g. CONNECT example.ts.net:443\n", r.RequestURI)
		return
	}
	rec.Host, rec.Port = host, port
	if !s.authorizedHTTP(r) {
		s.requireAuth(w, rec)
		return
	}
	// Not r.Context(): net/http cancels it when the client half-closes
	// (golang/go#18527), and a client may send CONNECT, its first bytes
	// and a FIN at once. The dial is still bounded by DialTimeout and
	// cancelled by Close.
	target, err := s.open(context.WithoutCancel(r.Context()), rec, host, port)
	if err != nil {
		w.Header().Set("Connection", "close")
		s.httpFail(w, rec, err, joinHostPort(rec.Host, port))
		return
	}
	defer target.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		rec.fail(fmt.Errorf("hijacking the connection: %w", err))
		httpError(w, http.StatusInternalServerError, "tsconnect: cannot tunnel on this connection\n")
		return
	}
	defer conn.Close()
	rec.allow()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		rec.setError(err)
		return
	}
	var pending []byte // sent by the client right after its CONNECT header
	if n := brw.Reader.Buffered(); n > 0 {
		pending, _ = brw.Reader.Peek(n)
	}
	s.splice(conn, pending, target, rec)
}

// splitTarget parses a CONNECT request target: host:port and nothing else.
func splitTarget(t string) (host string, port uint16, err error) {
	h, p, err := net.SplitHostPort(t)
	if err != nil {
		return "", 0, fmt.Errorf("bad CONNECT target %q: %w", t, err)
	}
	if h == "" {
		return "", 0, fmt.Errorf("bad CONNECT target %q: no host", t)
	}
	port, ok := parsePort(p)
	if !ok {
		return "", 0, fmt.Errorf("bad CONNECT target %q: port must be 1 to 65535", t)
	}
	// The host itself is checked with the rest of policy (open): a
	// malformed one is denied, not a bad request.
	return h, port, nil
}

// forwardState is what serveForward tells rewriteForward, forwardError and
// the trace hooks about one request.
type forwardState struct {
	rec       *record
	target    string        // host:port to dial, host after Expand
	authority string        // URL host as the client sent it: the Host header upstream
	body      *countingBody // the client's request body, nil if none

	mu       sync.Mutex
	resolved string
}

func (fs *forwardState) gotConn(info httptrace.GotConnInfo) {
	fs.mu.Lock()
	fs.resolved = info.Conn.RemoteAddr().String()
	fs.mu.Unlock()
}

// serveForward forwards an absolute-form plain-http request.
func (s *Server) serveForward(w http.ResponseWriter, r *http.Request, cc *clientConn) {
	rec := s.newRecord(cc, "http", time.Now())
	var body *countingBody
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		// ReverseProxy aborts a response whose body cannot be copied by
		// panicking with http.ErrAbortHandler: still write the audit line.
		p := recover()
		if body != nil {
			rec.BytesUp = body.n.Load()
			s.st.bytesUp.Add(rec.BytesUp)
		}
		rec.BytesDown = cw.n
		s.st.bytesDown.Add(cw.n)
		if p != nil {
			rec.setError(fmt.Errorf("response aborted: %v", p))
		}
		s.finish(rec)
		if p != nil {
			panic(p)
		}
	}()

	if !r.URL.IsAbs() || r.URL.Host == "" {
		rec.fail(errors.New("origin-form request: the client used the proxy as a web server"))
		httpError(w, http.StatusBadRequest, "tsconnect: this is an HTTP proxy, not a web server: send absolute-form requests (GET http://host/path) or CONNECT host:port, e.g. curl -x http://%s http://example.ts.net/\n", s.Addr())
		return
	}
	if r.URL.Scheme != "http" {
		rec.fail(fmt.Errorf("%s:// URL in the request line", r.URL.Scheme))
		if r.URL.Scheme == "https" {
			httpError(w, http.StatusBadRequest, "tsconnect: https:// URLs are not forwarded; tunnel them with CONNECT (set HTTPS_PROXY=http://%s, or curl -x http://%s https://...)\n", s.Addr(), s.Addr())
		} else {
			httpError(w, http.StatusBadRequest, "tsconnect: only http:// URLs are forwarded; use CONNECT for other protocols\n")
		}
		return
	}
	host, port := r.URL.Hostname(), uint16(80)
	if p := r.URL.Port(); p != "" {
		var ok bool
		if port, ok = parsePort(p); !ok {
			rec.fail(fmt.Errorf("bad port %q", p))
			httpError(w, http.StatusBadRequest, "tsconnect: bad port %q\n", p)
			return
		}
	}
	rec.Host, rec.Port = host, port
	if !s.authorizedHTTP(r) {
		s.requireAuth(w, rec)
		return
	}
	// The URL's host is what is checked and dialed; a differing Host header
	// is dropped (Go's server already prefers the URL's host for r.Host).
	host, err := s.prepare(host, port)
	rec.Host = host
	if err != nil {
		s.httpFail(w, rec, err, joinHostPort(host, port))
		return
	}

	fs := &forwardState{rec: rec, target: joinHostPort(host, port), authority: r.URL.Host}
	ctx := context.WithValue(r.Context(), fwdKey{}, fs)
	ctx = withRequest(ctx, &Request{Protocol: rec.Protocol, Client: rec.Client, Shared: true})
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: fs.gotConn})
	out := r.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		out.Body = body
		fs.body = body
	}
	rec.allow() // forwardError overrides
	s.rp.ServeHTTP(cw, out)
	fs.mu.Lock()
	rec.Resolved = fs.resolved
	fs.mu.Unlock()
}

// rewriteForward is the ReverseProxy's Rewrite. By the time it runs,
// ReverseProxy has removed the hop-by-hop headers (Proxy-Authorization and
// Proxy-Connection among them) and, as with any Rewrite, X-Forwarded-*.
func rewriteForward(pr *httputil.ProxyRequest) {
	fs := pr.In.Context().Value(fwdKey{}).(*forwardState)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = fs.target
	pr.Out.Host = fs.authority
	for k := range pr.Out.Header {
		if len(k) >= 6 && strings.EqualFold(k[:6], "proxy-") {
			delete(pr.Out.Header, k)
		}
	}
}

// forwardError is the ReverseProxy's ErrorHandler: the target could not be
// dialed, or failed before sending a response header.
func (s *Server) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	fs := r.Context().Value(fwdKey{}).(*forwardState)
	if fs.body != nil {
		if berr := fs.body.readErr(); berr != nil {
			// The client's fault, not the target's: a malformed chunked
			// body, say. The request was allowed and reached the target.
			fs.rec.setError(fmt.Errorf("reading the client's request body: %w", berr))
			w.Header().Set("Connection", "close")
			httpError(w, http.StatusBadRequest, "tsconnect: bad request body: %v\n", berr)
			return
		}
	}
	if r.Context().Err() != nil && !isTimeout(err) {
		fs.rec.fail(err) // the client left, or Close: nobody to answer
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	s.httpFail(w, fs.rec, err, fs.target)
}

// httpFail answers a request whose target could not be opened.
func (s *Server) httpFail(w http.ResponseWriter, rec *record, err error, target string) {
	var pe *policyError
	switch {
	case errors.As(err, &pe):
		rec.denyPolicy(pe)
		httpError(w, http.StatusForbidden, "tsconnect: %v\n", pe)
	case isTimeout(err):
		rec.fail(err)
		httpError(w, http.StatusGatewayTimeout, "tsconnect: timed out connecting to %q: %v\n", target, err)
	default:
		rec.fail(err)
		httpError(w, http.StatusBadGateway, "tsconnect: cannot connect to %q: %v\n", target, err)
	}
}

func (s *Server) authorizedHTTP(r *http.Request) bool {
	if !s.auth {
		return true
	}
	scheme, enc, ok := strings.Cut(r.Header.Get("Proxy-Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	return ok && s.creds.Valid(user, pass)
}

func (s *Server) requireAuth(w http.ResponseWriter, rec *record) {
	rec.deny(ruleProxyAuth, reasonProxyAuth, errors.New("missing or wrong Proxy-Authorization"))
	w.Header().Set("Proxy-Authenticate", `Basic realm="tsconnect"`)
	httpError(w, http.StatusProxyAuthRequired, "tsconnect: proxy authentication required\n")
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format, args...)
}

// refuseHTTP answers an HTTP client beyond MaxConns with 503. It runs
// outside http.Server: such a client holds no slot.
func (s *Server) refuseHTTP(cc *clientConn) {
	rec := s.newRecord(cc, "http", cc.start)
	rec.fail(cc.refusing)
	if req, err := http.ReadRequest(cc.br); err == nil {
		if req.Method == http.MethodConnect {
			rec.Protocol = "http-connect"
			rec.Host, rec.Port, _ = splitTarget(req.RequestURI)
		} else if h := req.URL.Hostname(); checkHost(h) == nil {
			rec.Host = h
			rec.Port, _ = parsePort(req.URL.Port())
		}
	}
	msg := fmt.Sprintf("tsconnect: %d connections in use (Config.MaxConns); try again later\n", s.cfg.MaxConns)
	if cc.refusing != errTooManyConns {
		msg = "tsconnect: " + cc.refusing.Error() + "\n"
	}
	writeHTTPError(cc, http.StatusServiceUnavailable, "Retry-After: 1\r\n", msg)
	s.finish(rec)
}

// countingBody counts request body bytes, and keeps the first error
// reading them other than EOF; the Transport reads it from its own
// goroutine.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64

	mu  sync.Mutex
	err error
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *countingBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// countingWriter counts response body bytes. Unwrap lets
// http.ResponseController (ReverseProxy's flushes, upgrades) reach w.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
