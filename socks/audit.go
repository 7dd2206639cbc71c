package socks

import (
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// AuditRecord is one line of the audit log ([Config.Audit]), written as JSON
// when a client connection (or, for plain-http forwarding, a request) ends.
type AuditRecord struct {
	Time       string `json:"time"`             // start, RFC 3339 with nanoseconds
	Client     string `json:"client"`           // client ip:port
	Protocol   string `json:"protocol"`         // "socks5", "http-connect" or "http"; "socks4" and "unknown" for refused or silent clients
	Host       string `json:"host"`             // requested host, after Expand ("" if the request never got that far)
	Port       uint16 `json:"port"`             // requested port
	Resolved   string `json:"resolved"`         // the dialed connection's remote address, "" if none
	Decision   string `json:"decision"`         // "allow", "deny" or "error"
	Rule       string `json:"rule"`             // the policy rule that decided a denial ("" if none did), or "proxy-auth"
	Reason     string `json:"reason,omitempty"` // why a denial: "no rule matches", "port 22 not in 443", "malformed host name", …
	BytesUp    int64  `json:"bytes_up"`         // client to target payload bytes
	BytesDown  int64  `json:"bytes_down"`       // target to client payload bytes
	DurationMS int64  `json:"duration_ms"`      // from Time to the end
	Error      string `json:"error,omitempty"`
}

// Audit decisions.
const (
	decisionAllow = "allow"
	decisionDeny  = "deny"
	decisionError = "error"
)

// record is an AuditRecord being filled in by the goroutine serving it.
type record struct {
	AuditRecord
	start time.Time
}

func (s *Server) newRecord(cc *clientConn, protocol string, start time.Time) *record {
	return &record{
		AuditRecord: AuditRecord{
			Time:     start.UTC().Format(time.RFC3339Nano),
			Client:   cc.RemoteAddr().String(),
			Protocol: protocol,
		},
		start: start,
	}
}

func (r *record) allow() { r.Decision = decisionAllow }

// Proxy authentication's denials: the rule and reason audit lines name.
const (
	ruleProxyAuth   = "proxy-auth"
	reasonProxyAuth = "proxy authentication required"
)

// denyPolicy records a denial by policy, or of a malformed host.
func (r *record) denyPolicy(pe *policyError) { r.deny(pe.rule, pe.reason, pe) }

func (r *record) deny(rule, reason string, err error) {
	r.Decision = decisionDeny
	r.Rule, r.Reason = rule, reason
	if err != nil {
		r.Error = err.Error()
	}
}

func (r *record) fail(err error) {
	r.Decision = decisionError
	if err != nil {
		r.Error = err.Error()
	}
}

// setError records err without changing the decision (a tunnel that was
// allowed and then broke is still "allow").
func (r *record) setError(err error) {
	if err != nil && r.Error == "" {
		r.Error = err.Error()
	}
}

// finish counts the record in Stats and queues its audit line.
func (s *Server) finish(r *record) {
	switch r.Decision {
	case decisionAllow:
		s.st.allowed.Add(1)
	case decisionDeny:
		s.st.denied.Add(1)
	default:
		r.Decision = decisionError
		s.st.failed.Add(1)
	}
	if r.Error != "" && r.Decision != decisionAllow {
		s.cfg.Logf("socks: %s %s %s: %s", r.Client, r.Protocol, r.Decision, r.Error)
	}
	if s.audit.w == nil {
		return
	}
	r.DurationMS = time.Since(r.start).Milliseconds()
	s.audit.emit(&r.AuditRecord)
}

// auditLog writes audit lines from one goroutine, so a slow Audit writer
// delays only the log, never the proxy.
type auditLog struct {
	w       io.Writer
	ch      chan []byte
	done    chan struct{}
	dropped atomic.Int64

	mu     sync.Mutex // guards closed and sends on ch
	closed bool
}

func newAuditLog(w io.Writer) *auditLog {
	a := &auditLog{w: w}
	if w != nil {
		a.ch = make(chan []byte, 1024)
		a.done = make(chan struct{})
		go a.run()
	}
	return a
}

func (a *auditLog) run() {
	defer close(a.done)
	for line := range a.ch {
		a.w.Write(line) // best effort: there is nowhere to report a failure but here
	}
}

func (a *auditLog) emit(r *AuditRecord) {
	line, err := json.Marshal(r)
	if err != nil {
		return
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		a.dropped.Add(1)
		return
	}
	select {
	case a.ch <- line:
	default:
		a.dropped.Add(1)
	}
}

// close flushes queued lines, waiting at most wait for a stuck writer.
func (a *auditLog) close(wait time.Duration) {
	if a.w == nil {
		return
	}
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	a.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
	}
}
