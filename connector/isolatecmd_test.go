//go:build linux

package connector_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestIsolatedCommand: the library's isolated command (this test binary
// is its shim, see TestMain) reaches the allowed node by its short name
// with a client told to ignore proxies, a denied name does not resolve,
// and the connection is audited with protocol "isolate". (e2e's
// TestIsolateNetns does the same, and more, through tsconnect run.)
func TestIsolatedCommand(t *testing.T) {
	if err := connector.IsolationAvailable(); err != nil {
		t.Skipf("no isolated commands on this machine: %v", err)
	}
	ctl := tailnettest.Shared(t)
	web, cnt := webNode(t, ctl, "iweb")
	var mu sync.Mutex
	var recs []connector.AuditRecord
	c := start(t, ctl, connector.Config{
		Allow: dnsfilter.MustParse(web.FQDN + ":80"),
		Audit: func(r connector.AuditRecord) { mu.Lock(); recs = append(recs, r); mu.Unlock() },
	})
	waitSeen(t, web, c)
	ic, err := c.IsolatedCommand(connector.IsolateOptions{}, nil, "sh", "-c",
		`curl -sS --noproxy '*' --max-time 20 http://iweb/; echo; curl -sS --max-time 20 http://iother/ 2>&1; echo "exit $?"`)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ic.Stdout, ic.Stderr = &out, &out
	if err := ic.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ic.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || lines[0] != "hello from iweb" || !strings.Contains(lines[1], "Could not resolve host: iother") || lines[2] != "exit 6" {
		t.Errorf("got %q; want web's answer, then iother unresolved (exit 6)", lines)
	}
	if cnt.Load() == 0 {
		t.Error("iweb saw no connection")
	}
	mu.Lock()
	defer mu.Unlock()
	var allowed, deniedDNS bool
	for _, r := range recs {
		allowed = allowed || r.Protocol == connector.ProtocolIsolate && r.Host == web.FQDN && r.Port == 80 && r.Decision == "allow"
		deniedDNS = deniedDNS || r.Protocol == connector.ProtocolIsolateDNS && strings.HasPrefix(r.Host, "iother.") && r.Decision == "deny"
	}
	if !allowed || !deniedDNS {
		t.Errorf("audit records %+v: want an isolate allow for %s:80 and an isolate-dns deny for iother", recs, web.FQDN)
	}
}
