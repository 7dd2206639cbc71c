package connector_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestPolicy: a policy file's deny rules win over its allow rules, on the
// name (Dial, the proxy's SOCKS5 and CONNECT) and on where an allowed
// name resolves; the target sees no connection; denials name the rule;
// Stats, metrics and Status carry the rules, their names and hits.
func TestPolicy(t *testing.T) {
	ctl := tailnettest.Shared(t)
	open, denied, byAddr := nodeName("pol-open"), nodeName("pol-admin"), nodeName("pol-prod")
	openN := ctl.StartNode(t, open, "tag:web")
	openN.ServeTCP(t, 7, nil)
	deniedN := ctl.StartNode(t, denied, "tag:web")
	deniedHits := deniedN.ServeTCP(t, 7, nil)
	byAddrN := ctl.StartNode(t, byAddr, "tag:web")
	byAddrHits := byAddrN.ServeTCP(t, 7, nil)
	dom := tailnettest.BaseDomain
	src := fmt.Sprintf(`{
		"tailnet": %q,
		"rules": [
			{"name": "echo", "allow": ".%s:7"},
			{"name": "no-admin", "deny": %q},
			{"name": "no-prod", "deny": "%s/32"},
			{"name": "unused", "allow": "nothing.%s"},
		],
		"tests": [
			{"dst": "%s:7", "expect": "allow", "rule": "echo"},
			{"dst": "%s:7", "expect": "deny", "rule": "no-admin"},
			{"dst": "%s:7", "addr": %q, "expect": "deny", "rule": "no-prod"},
		],
	}`, dom, dom, denied+"."+dom, byAddrN.IP4, dom, open, denied, byAddr, byAddrN.IP4)
	p, err := dnsfilter.ParsePolicy("test.hujson", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	recs := new(records)
	c := start(t, ctl, connector.Config{Policy: p, Audit: recs.add, Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"}})
	for _, n := range []*tailnettest.Node{openN, deniedN, byAddrN} {
		waitSeen(t, n, c)
	}

	conn, err := c.Dial(context.Background(), "tcp", open+":7")
	if err != nil {
		t.Fatal(err)
	}
	if got := echo(t, conn, "hi"); got != "hi" {
		t.Fatalf("echo %q", got)
	}
	conn.Close()

	_, err = c.Dial(context.Background(), "tcp", denied+":7")
	var de *dnsfilter.DeniedError
	if !errors.As(err, &de) || de.Rule != "!"+denied+"."+dom || de.Name != "no-admin" {
		t.Errorf("Dial(%s) = %v, want a denial by no-admin", denied, err)
	}
	_, err = c.Dial(context.Background(), "tcp", byAddr+":7")
	want := fmt.Sprintf("address %s matches !%s", byAddrN.IP4, byAddrN.IP4)
	if !errors.As(err, &de) || de.Name != "no-prod" || !strings.Contains(err.Error(), want) {
		t.Errorf("Dial(%s) = %v, want a denial by no-prod saying %q", byAddr, err, want)
	}
	rec := recs.wait(t, "the address denial", func(r connector.AuditRecord) bool {
		return r.Decision == "deny" && r.Rule == "!"+byAddrN.IP4.String()
	})
	if rec.Reason != want {
		t.Errorf("audit reason %q, want %q", rec.Reason, want)
	}

	// The proxy: SOCKS5 "not allowed by ruleset" for both; CONNECT a
	// 403 that names the rule.
	for _, host := range []string{denied, byAddr} {
		code, conn := socksConnect(t, c.ProxyAddr(), host, 7)
		conn.Close()
		if code != 0x02 {
			t.Errorf("SOCKS5 CONNECT %s: reply %#x, want 0x02", host, code)
		}
	}
	pu, _ := url.Parse("http://" + c.ProxyAddr())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	resp, err := hc.Get("http://" + byAddr + ":7/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("plain http to %s: %s, want 403", byAddr, resp.Status)
	}
	if n := deniedHits.Load() + byAddrHits.Load(); n != 0 {
		t.Errorf("the denied targets saw %d connections, want 0", n)
	}

	eventually(func() bool { return c.Stats().Rules[1].Hits >= 2 })
	hits := map[string]int64{}
	for _, r := range c.Stats().Rules {
		hits[r.Name] = r.Hits
	}
	// no-admin: Dial and SOCKS5; no-prod: Dial, SOCKS5 and plain http,
	// each a name that echo allowed first; echo: those and the dial.
	if hits["echo"] != 4 || hits["no-admin"] != 2 || hits["no-prod"] != 3 || hits["unused"] != 0 {
		t.Errorf("rule hits %v, want echo 4, no-admin 2, no-prod 3, unused 0", hits)
	}
	var m strings.Builder
	c.WriteMetrics(&m)
	for _, want := range []string{
		`tsconnect_rule_hits_total{rule="!` + denied + "." + dom + `",name="no-admin"} 2`,
		`tsconnect_rule_hits_total{rule="nothing.` + dom + `",name="unused"} 0`,
	} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, m.String())
		}
	}
	st, err := c.Status(context.Background())
	if err != nil || st.Policy != "test.hujson" || !strings.Contains(st.Allowlist, "!"+denied) {
		t.Errorf("Status = %+v, %v; want the policy file and its list", st, err)
	}

	// A policy whose tests fail is refused before anything starts.
	bad, err := dnsfilter.ParsePolicy("bad.hujson", []byte(`{"rules": [{"allow": ".a.example"}], "tests": [{"dst": "x.a.example:1", "expect": "deny"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var ce *connector.ConfigError
	var pe *dnsfilter.PolicyError
	if err := (connector.Config{Policy: bad}).Validate(); !errors.As(err, &ce) || ce.Field != "Policy" || !errors.As(err, &pe) || len(pe.Failures) != 1 {
		t.Errorf("Validate with failing tests = %v, want a ConfigError for Policy with the failure", err)
	}
	if err := (connector.Config{Policy: p, Allow: dnsfilter.MustParse(".a.example")}).Validate(); !errors.As(err, &ce) || ce.Field != "Policy" {
		t.Errorf("Validate with Policy and Allow = %v, want a ConfigError", err)
	}
}
