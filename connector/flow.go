package connector

// The connection layer. Every connection the connector opens — the
// proxy's tunnels, Dial, HTTPClient, forwards — passes through dialFlow,
// which decides (allowlist, routability), dials, and hands out a flowConn
// that counts its bytes, closes it when idle, holds one of Config.MaxConns
// and writes its audit record when it ends. The proxy (package socks)
// parses protocols and maps errors to replies; the records of what never
// reached a dial (a malformed request, wrong proxy credentials) and of
// plain-http requests, several of which share one pooled connection, it
// hands to record here, so one sink sees everything.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tsconnect/tsconnect/internal/auditq"
	"github.com/tsconnect/tsconnect/socks"
)

// AuditRecord is one line of the audit log: one per connection the
// connector opened or refused, written when it ends, and one per
// plain-http request through the proxy. See socks.AuditRecord for the
// fields; Protocol is the proxy's ("socks5", "http-connect", "http") or
// one of the Protocol constants.
type AuditRecord = socks.AuditRecord

// The protocols of connections that do not come through the proxy, as
// audit records and metrics name them.
const (
	ProtocolDial       = "dial"        // Connector.Dial
	ProtocolHTTPClient = "http-client" // Connector.HTTPClient
	ProtocolForward    = "forward"     // Connector.Forward
	// An isolated command's connections (Connector.ServeTUN), and the
	// names its DNS server refused.
	ProtocolIsolate    = "isolate"
	ProtocolIsolateDNS = "isolate-dns"
)

// Defaults for the zero values of Config.MaxConns and Config.IdleTimeout.
const (
	DefaultMaxConns    = 4096
	DefaultIdleTimeout = time.Hour
)

// ErrTooManyConns is what Dial returns (wrapped) while Config.MaxConns
// connections are open.
var ErrTooManyConns = errors.New("too many open connections (Config.MaxConns)")

// flows is the connection layer's state: the limit, the counters and the
// audit sink.
type flows struct {
	idle  time.Duration // < 0: never
	slots chan struct{} // one per open connection
	q     *auditq.Queue[AuditRecord]

	mu    sync.Mutex
	open  map[*flowConn]struct{}
	ended bool

	// Bytes of the connections that ended, and of the proxy's own records;
	// open connections count theirs in flowConn (see bytes).
	bytesUp, bytesDown atomic.Int64
	m                  metricSet
}

func newFlows(cfg *Config) *flows {
	f := &flows{
		idle:  cfg.IdleTimeout,
		slots: make(chan struct{}, cfg.MaxConns),
		open:  map[*flowConn]struct{}{},
	}
	f.m.init(cfg.Allow)
	if cfg.AuditLog != nil || cfg.Audit != nil {
		w, hook := cfg.AuditLog, cfg.Audit
		f.q = auditq.New(func(r AuditRecord) {
			if w != nil {
				if line, err := json.Marshal(&r); err == nil {
					w.Write(append(line, '\n')) // best effort: nowhere to report a failure
				}
			}
			if hook != nil {
				hook(r)
			}
		})
	}
	return f
}

// origin is who asked for a connection, for its audit record.
type origin struct {
	protocol string
	client   string         // ip:port of the proxy's or a forward's client; "" for Dial
	req      *socks.Request // the proxy's request, nil for others
}

// dialFlow is Dial with the connection layer around it.
func (c *Connector) dialFlow(ctx context.Context, o origin, network, addr string) (net.Conn, error) {
	f := c.flows
	start := time.Now()
	rec := AuditRecord{Time: start.UTC().Format(time.RFC3339Nano), Client: o.client, Protocol: o.protocol}
	host, port, err := splitAddr(network, addr)
	rec.Host, rec.Port = host, port
	// The proxy's plain-http connections are pooled: the proxy audits
	// each request on them instead.
	audit := o.req == nil || !o.req.Shared
	if o.req != nil {
		o.req.Audited()
	}
	fail := func(err error) (net.Conn, error) {
		if audit {
			setOutcome(&rec, err)
			f.record(rec, start)
		}
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	select {
	case f.slots <- struct{}{}:
	default:
		return fail(&net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("connector: %w: %d in use", ErrTooManyConns, cap(f.slots))})
	}
	// The proxy's requests were decided, and counted, by its Check.
	conn, d, err := c.dial(ctx, host, port, o.req == nil)
	if d.Allow {
		rec.Host = d.Host
	}
	if err != nil {
		<-f.slots
		return fail(err)
	}
	rec.Decision = socks.DecisionAllow
	rec.Resolved = conn.RemoteAddr().String()
	fc := &flowConn{Conn: conn, f: f, rec: rec, start: start, audit: audit}
	f.mu.Lock()
	if f.ended {
		f.mu.Unlock()
		conn.Close()
		<-f.slots
		return fail(net.ErrClosed)
	}
	f.open[fc] = struct{}{}
	f.mu.Unlock()
	if f.idle > 0 {
		fc.mu.Lock()
		if !fc.closed {
			fc.timer = time.AfterFunc(idleTick(f.idle), fc.checkIdle)
		}
		fc.mu.Unlock()
	}
	// Tunnels carry what their client sends: the names inside are checked
	// (vhost.go). The proxy's shared plain-http connections carry requests
	// it checked one by one.
	if o.protocol == ProtocolForward || o.protocol == ProtocolIsolate || o.req != nil && !o.req.Shared {
		return c.inspect(fc, d, port, o.protocol == ProtocolForward), nil
	}
	return fc, nil
}

// setOutcome fills in a failed connection's decision, rule and error.
func setOutcome(rec *AuditRecord, err error) {
	rec.Decision = socks.DecisionError
	if rule, reason, denied := socks.DenialOf(err); denied {
		rec.Decision, rec.Rule, rec.Reason = socks.DecisionDeny, rule, reason
	}
	rec.Error = err.Error()
}

// record counts a finished record and queues it for the audit sink. The
// proxy calls it (socks.Config.Record) for the records it writes itself.
func (f *flows) record(r AuditRecord, start time.Time) {
	if !start.IsZero() {
		r.DurationMS = time.Since(start).Milliseconds()
	}
	f.m.count(&r)
	if f.q != nil {
		f.q.Put(r)
	}
}

// fromProxy is socks.Config.Record: the proxy's own records, whose bytes
// no flowConn counted.
func (f *flows) fromProxy(r AuditRecord) {
	f.bytesUp.Add(r.BytesUp)
	f.bytesDown.Add(r.BytesDown)
	f.record(r, time.Time{})
}

// totals returns the bytes up and down of every connection so far, open
// ones included, and how many are open.
func (f *flows) totals() (up, down, open int64) {
	f.mu.Lock()
	open = int64(len(f.open))
	for fc := range f.open {
		if fc.audit {
			up += fc.up.Load()
			down += fc.down.Load()
		}
	}
	// Read under the lock: a connection that closes moves its bytes from
	// its own counters to these as it leaves f.open, under this lock, so
	// nothing is counted twice or missed.
	up += f.bytesUp.Load()
	down += f.bytesDown.Load()
	f.mu.Unlock()
	return up, down, open
}

// end closes every connection still open, so that each writes its
// record, then flushes the audit sink, waiting at most until deadline.
func (f *flows) end(deadline time.Time) {
	f.mu.Lock()
	f.ended = true
	open := make([]*flowConn, 0, len(f.open))
	for fc := range f.open {
		open = append(open, fc)
	}
	f.mu.Unlock()
	for _, fc := range open {
		fc.closeWith(errConnectorClosed)
	}
	f.q.Close(time.Until(deadline))
}

var errConnectorClosed = errors.New("connector closed")

// flowConn is a connection of the connection layer: it counts bytes,
// closes itself after Config.IdleTimeout without traffic, and writes its
// audit record when closed. CloseRead and CloseWrite are the tailnet
// connection's own.
type flowConn struct {
	net.Conn
	f     *flows
	rec   AuditRecord // filled in by dialFlow; finished by Close
	start time.Time
	audit bool // writes a record and counts bytes (not a pooled connection of the proxy's)

	up, down atomic.Int64
	timer    *time.Timer
	// Read by checkIdle only: the byte total it saw last, and since when.
	seen      int64
	quietFrom time.Time

	mu      sync.Mutex // guards closed and timer
	closed  bool
	lastErr atomic.Pointer[error] // a Read or Write error other than a close
}

func (fc *flowConn) Read(p []byte) (int, error) {
	n, err := fc.Conn.Read(p)
	if n > 0 {
		fc.down.Add(int64(n)) // all a Read costs: the idle timer reads these counters
	}
	if err != nil {
		fc.noteErr(err)
	}
	return n, err
}

func (fc *flowConn) Write(p []byte) (int, error) {
	n, err := fc.Conn.Write(p)
	if n > 0 {
		fc.up.Add(int64(n))
	}
	if err != nil {
		fc.noteErr(err)
	}
	return n, err
}

// noteErr keeps the first error worth an audit line: a peer that left
// the tailnet, a reset; not the end of the stream or a local close.
func (fc *flowConn) noteErr(err error) {
	var pl *PeerLeftError
	if errors.As(err, &pl) || !(errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)) {
		fc.lastErr.CompareAndSwap(nil, &err)
	}
}

func (fc *flowConn) CloseWrite() error {
	if cw, ok := fc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (fc *flowConn) CloseRead() error {
	if cr, ok := fc.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return errors.ErrUnsupported
}

func (fc *flowConn) Close() error { return fc.closeWith(nil) }

func (fc *flowConn) isClosed() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.closed
}

// closeWith closes the connection, recording why when the connection
// layer closes it, and writes its record. Only the first call does.
func (fc *flowConn) closeWith(reason error) error {
	fc.mu.Lock()
	if fc.closed {
		fc.mu.Unlock()
		return nil
	}
	fc.closed = true
	if fc.timer != nil {
		fc.timer.Stop()
	}
	r := fc.rec // under mu: a denial inside the tunnel writes it
	fc.mu.Unlock()
	err := fc.Conn.Close()
	f := fc.f
	up, down := fc.up.Load(), fc.down.Load()
	f.mu.Lock()
	delete(f.open, fc)
	if fc.audit {
		f.bytesUp.Add(up)
		f.bytesDown.Add(down)
	}
	f.mu.Unlock()
	<-f.slots
	if fc.audit {
		r.BytesUp, r.BytesDown = up, down
		switch {
		case reason != nil:
			r.Error = reason.Error()
		case fc.lastErr.Load() != nil:
			r.Error = (*fc.lastErr.Load()).Error()
		}
		f.record(r, fc.start)
	}
	return err
}

// idleTick is how often the idle timer looks at a connection: a
// connection quiet for idle is closed within idle plus a tick.
func idleTick(idle time.Duration) time.Duration { return max(idle/8, 10*time.Millisecond) }

// checkIdle runs on the idle timer: it closes the connection once its
// byte counters have not moved for the idle timeout, else re-arms. So a
// Read or Write costs one atomic add, no clock read.
func (fc *flowConn) checkIdle() {
	idle := fc.f.idle
	now := time.Now()
	if total := fc.up.Load() + fc.down.Load(); total != fc.seen || fc.quietFrom.IsZero() {
		fc.seen, fc.quietFrom = total, now
	} else if now.Sub(fc.quietFrom) >= idle {
		fc.closeWith(fmt.Errorf("closed after %v idle (Config.IdleTimeout)", idle))
		return
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if !fc.closed {
		fc.timer.Reset(idleTick(idle))
	}
}
