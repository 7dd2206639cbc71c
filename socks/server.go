// Package socks is the protocol layer of tsconnect: a SOCKS5 and HTTP proxy
// served on one localhost listener.
//
// It is not a policy engine and knows nothing of Tailscale. Which names may be
// reached, how a name is resolved and how a connection is carried are decided
// by the functions in [Config]: Expand and Check run before anything is
// resolved or dialed, and Dial opens the tunnel (and enforces policy again,
// after resolution). The connector package supplies them.
//
// # Protocols
//
// The first byte a client sends picks the protocol: 0x05 is SOCKS5 (RFC 1928,
// CONNECT only, optional RFC 1929 username/password), 0x04 (SOCKS4) gets a
// SOCKS4 refusal, and anything else is served as an HTTP/1.1 proxy: CONNECT
// tunnels and absolute-form plain-http requests (GET http://host/path).
// The host checked and dialed is always the request's target (the CONNECT
// authority or the URL's host), never a Host header naming another; plain
// http requests reach the target with Host set to the URL's authority as
// the client sent it, and without hop-by-hop or Proxy-* headers.
//
// The SOCKS5 greeting, authentication and request parsing use
// github.com/armon/go-socks5; the CONNECT itself is handled here so that the
// destination name reaches Dial unresolved and every failure gets the precise
// RFC 1928 reply code.
//
// # Audit
//
// With [Config.Audit] set, it receives one [AuditRecord] per SOCKS5 or HTTP
// CONNECT client connection when it ends, and one per request for
// plain-http forwarding (a keep-alive connection carries several requests).
// HTTP connections that end without a single well-formed request (a
// malformed request line, a header timeout) get one "error" record. A
// tunnel whose Dial takes its audit over ([Request.Audited], as the
// connector's does) gets its record from Dial's layer instead, which also
// times tunnels out: this package does not. Writing records (the
// connector writes JSON lines) is the caller's.
package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values in [Config].
const (
	DefaultAddr             = "127.0.0.1:1055"
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 15 * time.Second
	DefaultMaxConns         = 2048
)

// refusalSlots bounds the connections being refused cleanly (a SOCKS5 0x01
// reply or an HTTP 503) once MaxConns are in use. Beyond it, connections are
// closed at once.
const refusalSlots = 64

// httpKeepAliveIdle is how long an HTTP keep-alive connection may sit between
// requests while holding one of the MaxConns slots.
const httpKeepAliveIdle = 90 * time.Second

// Config configures a [Server]. Only Dial is required. Dial, Check, Expand
// and Logf are called concurrently from many connections.
type Config struct {
	// Addr is the TCP address to listen on. "" means "127.0.0.1:1055". A zero
	// port picks a free one; Server.Addr reports it. Addresses that are not
	// loopback are refused unless AllowNonLoopback is set and proxy
	// credentials are configured.
	Addr string

	// Dial opens the tunnel to addr ("host:port", host as the client sent it
	// after Expand; never resolved here). It must enforce policy itself too:
	// Check is only the early, pre-resolution gate. It must honour ctx, which
	// carries the DialTimeout deadline and is cancelled by Server.Close.
	// Required.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Check, if set, is called with the requested host (after Expand) and
	// port before anything is resolved or dialed. A non-nil error denies the
	// request; see [Denial].
	Check func(host string, port uint16) error

	// Expand, if set, rewrites a requested host name before Check and Dial,
	// for example a MagicDNS short name to its FQDN. It is not called for IP
	// literals.
	Expand func(host string) string

	// Username and Password, if set (both or neither), require proxy
	// authentication: RFC 1929 for SOCKS5 and Basic Proxy-Authorization for
	// HTTP. They are compared in constant time.
	Username, Password string

	// AllowNonLoopback permits listening on an address that is not loopback
	// (including "", 0.0.0.0 and ::). It has effect only with Username and
	// Password set: an unauthenticated proxy stays on loopback.
	AllowNonLoopback bool

	// HandshakeTimeout bounds the SOCKS5 greeting, authentication and request,
	// and the reading of each HTTP request header. 0 means 10s. Clients that
	// do not finish in time are disconnected.
	HandshakeTimeout time.Duration

	// IdleTimeout, if positive and under 90s, is how long an HTTP
	// keep-alive client connection may sit between requests (else 90s).
	// The proxy does not time tunnels out: the connections Dial returns
	// must (the connector's close after its Config.IdleTimeout without
	// traffic).
	IdleTimeout time.Duration

	// DialTimeout bounds each Dial. 0 means 15s.
	DialTimeout time.Duration

	// MaxConns bounds concurrent client connections. 0 means 2048. When
	// all are in use, a new client takes the slot of the connection idle
	// longest — one that has not sent a complete SOCKS5 request yet (or
	// anything at all), or an HTTP keep-alive connection between requests
	// — which is closed (Stats.Evicted). Only when every slot carries a
	// request or a tunnel is a client refused cleanly (SOCKS5 reply 0x01
	// general failure, HTTP 503) and disconnected; with 64 refusals
	// already under way, further connections are closed at once, with no
	// reply. An HTTP keep-alive connection keeps its slot while idle
	// between requests for at most 90s (or IdleTimeout if shorter), unless
	// a new client needs it.
	MaxConns int

	// MaxConnsPerClient bounds the slots one client holds: one uid, for a
	// client on this machine (the kernel names the owner of a loopback
	// connection's other end; Linux only), else one IP address. A client
	// at its bound takes the slot of its own connection idle longest, or
	// is refused cleanly (SOCKS5 0x01, HTTP 503 naming the bound); it can
	// never take another client's. So a flood from another user leaves the
	// agent's uid slots to work with; a flood from the agent's own uid is
	// the agent's. 0 means MaxConns - MaxConns/4 (1536 of 2048); negative,
	// no bound but MaxConns.
	MaxConnsPerClient int

	// Audit, if set, receives one record per client connection (per
	// request for plain-http forwarding; none for a request whose Dial
	// took the audit over, see Request.Audited); see [AuditRecord]. It is
	// called from the goroutine serving the connection, so it must be
	// safe for concurrent use and must not block: queue the record, as
	// the connector does, whose sink writes them as JSON lines.
	Audit func(AuditRecord)

	// Logf, if set, receives debug logs. It must be safe for concurrent use.
	Logf func(format string, args ...any)
}

// Denial is how Check and Dial report a policy denial. An error returned by
// either is a denial (SOCKS5 reply 0x02, HTTP 403, audit decision "deny") if
// errors.As finds in it an error implementing Denial with Denied() true;
// RuleName names the rule that decided ("" when none did) in the HTTP 403
// body and the audit line's "rule". If the error also has a method
// DenialReason() string, that short reason ("no rule matches", "port 22 not
// in 443") is the audit line's "reason" and, with no rule, the 403's. Any
// error from Check denies, whether or not it implements Denial; from Dial,
// other errors are connection failures (SOCKS5 0x01/0x03-0x06, HTTP
// 502/504).
//
// The policy package need not import this one: any type with these methods
// will do (dnsfilter's DeniedError has all three).
type Denial interface {
	Denied() bool
	RuleName() string
}

// Stats are counters since Listen.
type Stats struct {
	Accepted int64 // client TCP connections accepted
	Active   int64 // client connections being served now (each holds one of MaxConns)
	Allowed  int64 // tunnels opened and HTTP requests forwarded
	Denied   int64 // refused by policy (Check or Dial) or by proxy authentication
	Failed   int64 // everything else that ended badly: malformed requests, dial errors, refusals at MaxConns
	Refused  int64 // connections refused because MaxConns were in use (also counted in Failed)
	Evicted  int64 // idle client connections closed to give their slot to a new client at MaxConns

	BytesUp   int64 // payload bytes from clients to targets
	BytesDown int64 // payload bytes from targets to clients
}

type counters struct {
	accepted, active, allowed, denied, failed, refused, evicted atomic.Int64
	bytesUp, bytesDown                                          atomic.Int64
}

// Server is a running proxy. Create it with [Listen]; stop it with
// [Server.Close].
type Server struct {
	cfg      Config
	auth     bool
	creds    credentials
	ln       net.Listener
	httpLn   *chanListener
	httpSrv  *http.Server
	rp       *httputil.ReverseProxy
	tr       *http.Transport
	errorLog *log.Logger

	ctx    context.Context // cancelled by Close; parent of every dial
	cancel context.CancelFunc

	slots    chan struct{} // one per admitted client connection (MaxConns)
	refusals chan struct{} // one per client being refused cleanly

	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{} // client and target connections, closed by Close
	wg     sync.WaitGroup         // accept loop, http.Server.Serve, one per client connection
	// perClient counts the admitted connections of each client (clientOf),
	// for Config.MaxConnsPerClient.
	perClient map[string]int

	st counters
}

// Listen validates cfg, binds its address and serves SOCKS5 and HTTP proxy
// clients in background goroutines until [Server.Close].
func Listen(cfg Config) (*Server, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if err := cfg.checkBindAddr(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("socks: listen on %s: %w", cfg.Addr, err)
	}
	// A name like "localhost" is checked only after binding: what matters is
	// the address the kernel actually gave us.
	if !cfg.AllowNonLoopback {
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err != nil || !ap.Addr().Unmap().IsLoopback() {
			ln.Close()
			return nil, fmt.Errorf("socks: refusing to serve on %s (from %q): not a loopback address; use 127.0.0.1 or [::1], or set AllowNonLoopback with Username and Password", ln.Addr(), cfg.Addr)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		auth:      cfg.Username != "",
		creds:     credentials{user: cfg.Username, pass: cfg.Password},
		ln:        ln,
		httpLn:    newChanListener(ln.Addr()),
		ctx:       ctx,
		cancel:    cancel,
		slots:     make(chan struct{}, cfg.MaxConns),
		refusals:  make(chan struct{}, refusalSlots),
		conns:     make(map[io.Closer]struct{}),
		perClient: map[string]int{},
		errorLog:  log.New(logfWriter(cfg.Logf), "socks: ", 0),
	}
	s.initHTTP()

	s.wg.Add(2)
	go s.acceptLoop()
	go func() {
		defer s.wg.Done()
		s.httpSrv.Serve(s.httpLn) // returns when Close closes httpLn
	}()
	return s, nil
}

func (c *Config) normalize() error {
	if c.Dial == nil {
		return errors.New("socks: Config.Dial is required")
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("socks: set both Config.Username and Config.Password, or neither")
	}
	if len(c.Username) > 255 || len(c.Password) > 255 {
		return errors.New("socks: Config.Username and Config.Password must be at most 255 bytes each (RFC 1929)")
	}
	if c.HandshakeTimeout < 0 || c.DialTimeout < 0 || c.MaxConns < 0 {
		return errors.New("socks: Config.HandshakeTimeout, DialTimeout and MaxConns must not be negative")
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = c.MaxConns - c.MaxConns/4
	}
	if c.MaxConnsPerClient >= c.MaxConns {
		c.MaxConnsPerClient = -1 // no bound MaxConns does not already set
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

// checkBindAddr refuses, before binding, addresses that are not loopback
// unless exposing the proxy was asked for and it has credentials.
func (c *Config) checkBindAddr() error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("socks: bad Config.Addr %q: %w", c.Addr, err)
	}
	if c.AllowNonLoopback {
		if c.Username == "" {
			return fmt.Errorf("socks: refusing to listen on %q without proxy authentication: AllowNonLoopback needs Username and Password", c.Addr)
		}
		return nil
	}
	if host == "localhost" {
		return nil // verified after binding
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("socks: refusing to listen on %q: not a loopback address; use 127.0.0.1 or [::1], or set AllowNonLoopback with Username and Password", c.Addr)
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted:  s.st.accepted.Load(),
		Active:    s.st.active.Load(),
		Allowed:   s.st.allowed.Load(),
		Denied:    s.st.denied.Load(),
		Failed:    s.st.failed.Load(),
		Refused:   s.st.refused.Load(),
		Evicted:   s.st.evicted.Load(),
		BytesUp:   s.st.bytesUp.Load(),
		BytesDown: s.st.bytesDown.Load(),
	}
}

// Close stops the listener, cancels pending dials, closes every client and
// target connection (tunnels included) and waits for the goroutines serving
// them to finish. Calling Close again returns net.ErrClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.closed = true
	conns := make([]io.Closer, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	s.cancel()
	err := s.ln.Close()
	s.httpLn.Close()
	s.httpSrv.Close()
	// http.Server.Close does not close hijacked (CONNECT) connections, and
	// knows nothing of SOCKS ones: close everything we track ourselves.
	for _, c := range conns {
		c.Close()
	}
	s.tr.CloseIdleConnections()
	s.wg.Wait()
	s.tr.CloseIdleConnections()
	return err
}

// track registers c to be closed by Close, reporting false if the server is
// already closed. With addWG it also counts a client connection in s.wg,
// under the same lock, so no Add can race with Close's Wait.
func (s *Server) track(c io.Closer, addWG bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	if addWG {
		s.wg.Add(1)
	}
	return true
}

func (s *Server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.cfg.Logf("socks: accept: %v; retrying in %v", err, delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		s.st.accepted.Add(1)
		cc := &clientConn{Conn: c, s: s}
		if s.cfg.MaxConnsPerClient > 0 {
			cc.client = clientOf(c) // a kernel lookup: only when there is a bound
		}
		cc.idleSince.Store(time.Now().UnixNano())
		if why := s.admit(cc); why != nil {
			select {
			case s.refusals <- struct{}{}:
				cc.refusing = why
				s.st.refused.Add(1)
			default:
				s.st.refused.Add(1)
				s.st.failed.Add(1)
				s.cfg.Logf("socks: %v: %v; %d refusals under way, closing with no reply", c.RemoteAddr(), why, refusalSlots)
				c.Close()
				continue
			}
		}
		if !s.track(cc, true) {
			cc.release() // not counted in s.wg: only gives the slot back
			c.Close()
			return
		}
		cc.counted = true
		go s.serveConn(cc)
	}
}

// serveConn reads the first byte and hands the connection to the right
// protocol. HTTP connections are passed to s.httpSrv, which then owns them.
func (s *Server) serveConn(cc *clientConn) {
	cc.start = time.Now()
	handedOff := false
	defer func() {
		// A panic while serving one client (in Dial or Check, say) ends
		// that connection, not the process: the node stays up for the
		// others and still logs out on Close. net/http does the same for
		// HTTP requests.
		if p := recover(); p != nil {
			s.st.failed.Add(1)
			s.cfg.Logf("socks: %v: panic serving connection: %v\n%s", cc.RemoteAddr(), p, debug.Stack())
		}
		if !handedOff {
			cc.Close()
			cc.release()
		}
	}()
	cc.SetDeadline(cc.start.Add(s.cfg.HandshakeTimeout))
	cc.br = bufio.NewReaderSize(cc.Conn, 512)
	first, err := cc.br.Peek(1)
	if err != nil {
		if cc.evicted.Load() {
			rec := s.newRecord(cc, "unknown", cc.start)
			rec.fail(errEvicted)
			s.finish(rec)
		} else if isTimeout(err) {
			rec := s.newRecord(cc, "unknown", cc.start)
			rec.fail(fmt.Errorf("handshake timeout: no data within %v", s.cfg.HandshakeTimeout))
			s.finish(rec)
		}
		return
	}
	switch first[0] {
	case 5:
		s.serveSOCKS5(cc)
	case 4:
		s.refuseSOCKS4(cc)
	default:
		if cc.refusing != nil {
			s.refuseHTTP(cc)
			return
		}
		if s.checkRequestLine(cc) {
			return
		}
		// http.Server sets its own read deadlines (ReadHeaderTimeout), but
		// not write deadlines: clear ours.
		cc.SetDeadline(time.Time{})
		handedOff = s.httpLn.deliver(cc)
	}
}

// clientOf names the client a connection's slots count against
// (Config.MaxConnsPerClient): its uid when the kernel knows it, else its
// IP address.
func clientOf(c net.Conn) string {
	if uid, ok := peerUID(c); ok {
		return "uid " + strconv.FormatUint(uint64(uid), 10)
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return "ip " + a.IP.String()
	}
	return c.RemoteAddr().Network() + " " + c.RemoteAddr().String()
}

// admit gives cc a slot, or says why not: its client holds
// MaxConnsPerClient already and has no idle connection to give up, or all
// MaxConns carry requests or tunnels.
func (s *Server) admit(cc *clientConn) error {
	if !s.takeClient(cc) {
		// At its bound: only its own idle connection can make room.
		if s.evictIdle(cc.client) {
			if s.takeClient(cc) {
				cc.slot.Store(true) // the evicted connection's
				return nil
			}
			<-s.slots // another of the client's took the room first
			s.st.active.Add(-1)
		}
		return fmt.Errorf("%s is at its bound of %d connections (Config.MaxConnsPerClient); try again later", cc.client, s.cfg.MaxConnsPerClient)
	}
	select {
	case s.slots <- struct{}{}:
		cc.slot.Store(true)
		s.st.active.Add(1)
		return nil
	default:
	}
	if s.evictIdle("") {
		cc.slot.Store(true) // the evicted connection's
		return nil
	}
	s.putClient(cc)
	return errTooManyConns
}

// takeClient counts cc against its client's bound, if below it; with no
// bound, it counts nothing.
func (s *Server) takeClient(cc *clientConn) bool {
	max := s.cfg.MaxConnsPerClient
	if max < 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perClient[cc.client] >= max {
		return false
	}
	s.perClient[cc.client]++
	cc.counts.Store(true)
	return true
}

// putClient undoes takeClient.
func (s *Server) putClient(cc *clientConn) {
	if !cc.counts.Swap(false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perClient[cc.client]--; s.perClient[cc.client] <= 0 {
		delete(s.perClient, cc.client)
	}
}

// evictIdle frees a slot when all MaxConns are taken (or, for client, one
// of that client's): it closes the client connection that has been idle
// longest (see clientConn.idleSince) and reports true, its slot then
// being the caller's to take; false if every slot carries a request or a
// tunnel. So connections that send nothing, or stall their handshake,
// cannot lock clients out: they hold a slot only while none is needed.
func (s *Server) evictIdle(client string) bool {
	var victim *clientConn
	s.mu.Lock()
	for c := range s.conns {
		cc, ok := c.(*clientConn)
		if !ok || !cc.slot.Load() || client != "" && cc.client != client {
			continue
		}
		if t := cc.idleSince.Load(); t != 0 && (victim == nil || t < victim.idleSince.Load()) {
			victim = cc
		}
	}
	s.mu.Unlock()
	if victim == nil || !victim.slot.CompareAndSwap(true, false) {
		return false
	}
	s.putClient(victim)
	s.st.evicted.Add(1)
	s.cfg.Logf("socks: %v: idle for %v, closed to admit a new client (%d connections in use, Config.MaxConns)",
		victim.RemoteAddr(), time.Since(time.Unix(0, victim.idleSince.Load())).Round(time.Millisecond), s.cfg.MaxConns)
	victim.evicted.Store(true)
	victim.Close()
	return true
}

var errEvicted = errors.New("closed while idle, before any request, to admit a new client (Config.MaxConns in use)")

// clientConn is an accepted client connection. Reads first drain the bytes
// buffered while sniffing the protocol.
type clientConn struct {
	net.Conn
	s     *Server
	br    *bufio.Reader // set before any Read; holds the sniffed bytes
	start time.Time
	slot  atomic.Bool // holds one of s.slots
	// idleSince is when the connection last had nothing in progress
	// (UnixNano): accepted and no complete SOCKS5 request yet, or an HTTP
	// connection between requests; 0 while a request or tunnel is.
	idleSince atomic.Int64
	refusing  error       // holds one of s.refusals instead: refuse cleanly, saying this
	counted   bool        // counted in s.wg
	client    string      // whom its slot counts against (clientOf)
	counts    atomic.Bool // counted in s.perClient

	requests atomic.Int64 // HTTP requests seen by the handler
	hijacked atomic.Bool  // HTTP connection hijacked (CONNECT, upgrades)
	evicted  atomic.Bool  // closed by evictIdle

	closeOnce   sync.Once
	closeErr    error
	releaseOnce sync.Once
}

func (c *clientConn) Read(p []byte) (int, error) {
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

func (c *clientConn) Close() error {
	c.closeOnce.Do(func() {
		c.s.untrack(c)
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

func (c *clientConn) CloseWrite() error { return closeWrite(c.Conn) }

// release returns the connection's slot and marks its serving goroutine done
// (s.wg). It is called once the connection is finished with, by whichever
// goroutine served it last.
func (c *clientConn) release() {
	c.releaseOnce.Do(func() {
		if c.slot.Swap(false) {
			<-c.s.slots
			c.s.st.active.Add(-1)
		}
		c.s.putClient(c)
		if c.refusing != nil {
			<-c.s.refusals
		}
		if c.counted {
			c.s.wg.Done()
		}
	})
}

// trackedConn is a connection to a target, closed by Server.Close.
type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.untrack(c) })
	return c.Conn.Close()
}

func (c *trackedConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// chanListener is the net.Listener the http.Server serves: serveConn
// delivers it the connections it sniffed as HTTP.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// deliver hands c to Accept, reporting false if the listener is closed.
func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	if f != nil {
		f("%s", p)
	}
	return len(p), nil
}
