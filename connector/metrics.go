package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"tailscale.com/metrics"

	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/socks"
)

// metricSet holds the connection layer's labelled counters. The maps are
// tailscale's (tailscale.com/metrics), kept per connector and never
// published to the process-wide expvar registry, so connectors in one
// process do not share them.
type metricSet struct {
	conns   metrics.MultiLabelMap[connKey] // records by protocol and decision
	denials metrics.MultiLabelMap[ruleKey] // denials by rule
	hits    metrics.MultiLabelMap[hitKey]  // decisions by allowlist rule

	rules []dnsfilter.Rule  // the allowlist's, in order
	names map[string]string // rule text -> name, for hit
}

type connKey struct {
	Protocol string `prom:"protocol"`
	Decision string `prom:"decision"`
}

// ruleKey labels denials by the rule that decided, "none" when none did
// (no rule matches, a malformed name): never by reason or host, which
// would make the label set as large as what clients send.
type ruleKey struct {
	Rule string `prom:"rule"`
}

// hitKey labels a rule's decisions by its text and its policy file name.
type hitKey struct {
	Rule string `prom:"rule"`
	Name string `prom:"name"`
}

func (m *metricSet) init(allow *dnsfilter.List) {
	m.conns.Type, m.conns.Help = "counter", "Connections (and plain-http requests) by protocol and decision."
	m.denials.Type, m.denials.Help = "counter", "Denials by the allowlist rule that decided (none: no rule matched)."
	m.hits.Type, m.hits.Help = "counter", "Decisions by each allowlist rule (a rule never used stays at 0)."
	m.rules = allow.Rules()
	m.names = make(map[string]string, len(m.rules))
	for _, r := range m.rules {
		if _, dup := m.names[r.Text]; !dup {
			m.names[r.Text] = r.Name
			m.hits.Add(hitKey{r.Text, r.Name}, 0)
		}
	}
}

// hit counts a decision of the allowlist for one connection or request.
func (m *metricSet) hit(d dnsfilter.Decision) {
	if name, ok := m.names[d.Rule]; ok {
		m.hits.Add(hitKey{d.Rule, name}, 1)
	}
}

// RuleHits is how often one allowlist rule decided, in [Stats].
type RuleHits struct {
	dnsfilter.Rule
	Hits int64 // connections and plain-http requests it allowed or denied
}

func (m *metricSet) ruleHits() []RuleHits {
	out := make([]RuleHits, len(m.rules))
	for i, r := range m.rules {
		out[i].Rule = r
		if v, ok := m.hits.Get(hitKey{r.Text, m.names[r.Text]}).(interface{ Value() int64 }); ok {
			out[i].Hits = v.Value()
		}
	}
	return out
}

func (m *metricSet) count(r *AuditRecord) {
	m.conns.Add(connKey{r.Protocol, r.Decision}, 1)
	if r.Decision == socks.DecisionDeny {
		rule := r.Rule
		if rule == "" {
			rule = "none"
		}
		m.denials.Add(ruleKey{rule}, 1)
	}
}

// Stats are the connection layer's counters since Start: every
// connection the connector opened or refused (the proxy's, Dial's,
// HTTPClient's, forwards'), plain-http requests through the proxy, and
// the proxy's clients refused before any dial (bad requests, proxy
// authentication).
type Stats struct {
	Allowed int64 // connections opened, and plain-http requests forwarded
	Denied  int64 // refused by the allowlist or proxy authentication
	Failed  int64 // everything else that ended badly
	Active  int64 // connections open now

	BytesUp   int64 // bytes sent to tailnet destinations
	BytesDown int64 // bytes received from them

	AuditDropped int64 // audit records dropped because the sink could not keep up

	// Rules are the allowlist's rules in order, with how many
	// connections and plain-http requests each decided: a rule that
	// never decides is a rule to question. A name allowed by one rule
	// and then refused for its address by a deny rule counts for both;
	// a rule that appears twice in the list, on its first appearance.
	Rules []RuleHits
}

// Stats returns a snapshot of the connection layer's counters.
func (c *Connector) Stats() Stats {
	f := c.flows
	st := Stats{AuditDropped: f.q.Dropped(), Rules: f.m.ruleHits()}
	st.BytesUp, st.BytesDown, st.Active = f.totals()
	f.m.conns.Do(func(kv metrics.KeyValue[connKey]) {
		n := kv.Value.(interface{ Value() int64 }).Value()
		switch kv.Key.Decision {
		case socks.DecisionAllow:
			st.Allowed += n
		case socks.DecisionDeny:
			st.Denied += n
		default:
			st.Failed += n
		}
	})
	return st
}

// Ready reports nil when the connector serves: the node is Running with
// tailnet addresses and, if configured, the proxy is listening; otherwise
// an error saying what is missing.
func (c *Connector) Ready(ctx context.Context) error {
	select {
	case <-c.closed:
		return errors.New("connector closed")
	default:
	}
	v := c.view.load()
	if v == nil || !v.self4.IsValid() && !v.self6.IsValid() {
		return errors.New("node has no tailnet address")
	}
	st, err := c.lc.StatusWithoutPeers(ctx)
	if err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	if st.BackendState != "Running" {
		return fmt.Errorf("node state is %s, not Running", st.BackendState)
	}
	if c.cfg.Proxy != nil && c.proxy == nil {
		return errors.New("proxy not listening")
	}
	return nil
}

// WriteMetrics writes the connector's metrics in the Prometheus text
// exposition format (version 0.0.4): tsconnect_connections_total by
// protocol and decision, tsconnect_denials_total by rule, bytes, open
// connections, the proxy's client counters and the node's state.
func (c *Connector) WriteMetrics(w io.Writer) {
	st := c.Stats()
	c.flows.m.conns.WritePrometheus(w, "tsconnect_connections_total")
	c.flows.m.denials.WritePrometheus(w, "tsconnect_denials_total")
	c.flows.m.hits.WritePrometheus(w, "tsconnect_rule_hits_total")
	metric := func(name, typ, help string, v int64) {
		fmt.Fprintf(w, "# TYPE %s %s\n# HELP %s %s\n%s %d\n", name, typ, name, help, name, v)
	}
	fmt.Fprintf(w, "# TYPE tsconnect_bytes_total counter\n# HELP tsconnect_bytes_total Bytes to (up) and from (down) tailnet destinations.\n")
	fmt.Fprintf(w, "tsconnect_bytes_total{direction=\"up\"} %d\ntsconnect_bytes_total{direction=\"down\"} %d\n", st.BytesUp, st.BytesDown)
	metric("tsconnect_connections_active", "gauge", "Connections open now.", st.Active)
	metric("tsconnect_audit_dropped_total", "counter", "Audit records dropped because the sink could not keep up.", st.AuditDropped)
	if c.proxy != nil {
		ps := c.proxy.Stats()
		metric("tsconnect_proxy_clients_accepted_total", "counter", "Proxy client connections accepted.", ps.Accepted)
		metric("tsconnect_proxy_clients_active", "gauge", "Proxy client connections being served.", ps.Active)
		metric("tsconnect_proxy_clients_refused_total", "counter", "Proxy clients refused at the connection limit.", ps.Refused)
		metric("tsconnect_proxy_clients_evicted_total", "counter", "Idle proxy clients closed to admit new ones.", ps.Evicted)
	}
	ready := int64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c.Ready(ctx) == nil {
		ready = 1
	}
	metric("tsconnect_ready", "gauge", "1 when the node is Running with addresses and the proxy serves.", ready)
	peers := int64(0)
	if v := c.view.load(); v != nil {
		peers = int64(v.peers)
	}
	metric("tsconnect_peers", "gauge", "Peers in the network map.", peers)
}

// HealthHandler serves /metrics (WriteMetrics), /healthz (200 while the
// connector is not closed) and /readyz (200 when Ready, else 503 with
// the reason).
func (c *Connector) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		c.WriteMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-c.closed:
			http.Error(w, "connector closed", http.StatusServiceUnavailable)
		default:
			io.WriteString(w, "ok\n")
		}
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}
