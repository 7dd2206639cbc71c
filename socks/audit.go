package socks

import (
	"context"
	"sync/atomic"
	"time"
)

// AuditRecord is one record of the audit log ([Config.Audit]), made when a
// client connection (or, for plain-http forwarding, a request) ends. The
// connector writes them as JSON lines, with these names.
type AuditRecord struct {
	Time       string `json:"time"`                // start, RFC 3339 with nanoseconds
	Client     string `json:"client"`              // client ip:port
	Protocol   string `json:"protocol"`            // "socks5", "http-connect" or "http"; "socks4" and "unknown" for refused or silent clients
	Host       string `json:"host"`                // requested host, after Expand ("" if the request never got that far)
	Port       uint16 `json:"port"`                // requested port
	Resolved   string `json:"resolved"`            // the dialed connection's remote address, "" if none
	Decision   string `json:"decision"`            // "allow", "deny" or "error"
	Rule       string `json:"rule"`                // the policy rule that decided a denial ("" if none did), or "proxy-auth"
	Reason     string `json:"reason,omitempty"`    // why a denial: "no rule matches", "port 22 not in 443", "malformed host name", …
	SNI        string `json:"sni,omitempty"`       // a tunnel's TLS SNI, when the connector refused it
	HTTPHost   string `json:"http_host,omitempty"` // an HTTP Host (or absolute URL host) inside a tunnel, when the connector refused it
	BytesUp    int64  `json:"bytes_up"`            // client to target payload bytes
	BytesDown  int64  `json:"bytes_down"`          // target to client payload bytes
	DurationMS int64  `json:"duration_ms"`         // from Time to the end
	Error      string `json:"error,omitempty"`
}

// AuditRecord.Decision values.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	DecisionError = "error"
)

// record is an AuditRecord being filled in by the goroutine serving it.
type record struct {
	AuditRecord
	start time.Time
	req   *Request // what Dial was told of the request; nil until then
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

func (r *record) allow() { r.Decision = DecisionAllow }

// Proxy authentication's denials: the rule and reason audit lines name.
const (
	ruleProxyAuth   = "proxy-auth"
	reasonProxyAuth = "proxy authentication required"
)

// denyPolicy records a denial by policy, or of a malformed host.
func (r *record) denyPolicy(pe *policyError) { r.deny(pe.rule, pe.reason, pe) }

func (r *record) deny(rule, reason string, err error) {
	r.Decision = DecisionDeny
	r.Rule, r.Reason = rule, reason
	if err != nil {
		r.Error = err.Error()
	}
}

func (r *record) fail(err error) {
	r.Decision = DecisionError
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

// finish counts the record in Stats and hands it to Config.Audit, unless the Dial layer took the request's audit
// over (Request.Audited).
func (s *Server) finish(r *record) {
	switch r.Decision {
	case DecisionAllow:
		s.st.allowed.Add(1)
	case DecisionDeny:
		s.st.denied.Add(1)
	default:
		r.Decision = DecisionError
		s.st.failed.Add(1)
	}
	if r.Error != "" && r.Decision != DecisionAllow {
		s.cfg.Logf("socks: %s %s %s: %s", r.Client, r.Protocol, r.Decision, r.Error)
	}
	if r.req != nil && r.req.audited.Load() {
		return
	}
	if s.cfg.Audit != nil {
		r.DurationMS = time.Since(r.start).Milliseconds()
		s.cfg.Audit(r.AuditRecord)
	}
}

// Request is what Config.Dial learns, from its context, of the client
// request it dials for: RequestFromContext returns it.
type Request struct {
	Protocol string // "socks5", "http-connect" or "http"
	Client   string // the client's ip:port
	// Shared is true for plain-http forwarding: the connection is kept
	// alive and may carry requests of several clients, each audited by the
	// proxy on its own.
	Shared bool

	audited atomic.Bool
}

// Audited tells the proxy that the Dial layer writes this request's audit
// record itself (for a tunnel, when the connection Dial returned is
// closed; for a failed Dial, at once), so the proxy does not. The request
// is still counted in Stats. It has no effect on Shared requests.
func (r *Request) Audited() {
	if !r.Shared {
		r.audited.Store(true)
	}
}

type requestKey struct{}

// RequestFromContext returns the request a Config.Dial call is made for,
// or nil when the proxy did not make the call.
func RequestFromContext(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

func withRequest(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}
