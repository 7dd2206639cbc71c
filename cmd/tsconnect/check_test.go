package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestCheck: allowed and reachable targets pass; a denied target (never
// dialed), a closed port and an HTTPS server whose certificate is not
// trusted fail with exit 5; --insecure skips verification; --json parses.
func TestCheck(t *testing.T) {
	tn := newTailnet(t, "web")
	tlsHits, _, _ := tn.web.ServeHTTPS(t, 443, helloHandler("web"))
	fqdn := "web." + tailnettest.BaseDomain

	t.Run("table ok", func(t *testing.T) {
		t.Parallel()
		p := tsc(t, tn.env(), "check", "--allow", fqdn+":80,7", "http://web/", "web:7", "http://"+fqdn+"/login")
		out := p.stdout.String()
		if p.code != 0 {
			t.Fatalf("exit %d\n%s\n%s", p.code, out, p.stderr)
		}
		for _, row := range []string{
			`(?m)^TARGET +POLICY +RULE +REACHABLE +HTTP +LATENCY +NOTE$`,
			`(?m)^http://web/ +allowed +` + regexp.QuoteMeta(fqdn+":7,80") + ` +yes +200 +[\d.]+ms / [\d.]+ms$`,
			`(?m)^web:7 +allowed +\S+ +yes +- +[\d.]+ms$`,
			`(?m)^http://` + regexp.QuoteMeta(fqdn) + `/login +allowed +\S+ +yes +200 `,
		} {
			if !regexp.MustCompile(row).MatchString(out) {
				t.Errorf("table lacks %s:\n%s", row, out)
			}
		}
		t.Logf("check, 3 targets: %v\n%s", p.dur.Round(time.Millisecond), out)
	})

	t.Run("table denied", func(t *testing.T) {
		t.Parallel()
		hits := tn.web.ServeHTTP(t, 8080, helloHandler("web"))
		p := tsc(t, tn.env(), "check", "--allow", "other."+tailnettest.BaseDomain+":443", "web:8080", "other:22")
		out := p.stdout.String()
		if p.code != exitCheckFailed {
			t.Errorf("exit %d, want %d\n%s\n%s", p.code, exitCheckFailed, out, p.stderr)
		}
		for _, row := range []string{
			`(?m)^web:8080 +denied +no rule matches +- +- +-$`,
			`(?m)^other:22 +denied +` + regexp.QuoteMeta("other."+tailnettest.BaseDomain+":443") + `: port 22 not in 443 +- `,
		} {
			if !regexp.MustCompile(row).MatchString(out) {
				t.Errorf("table lacks %s:\n%s", row, out)
			}
		}
		if hits.Load() != 0 {
			t.Error("a denied target was dialed")
		}
	})

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		before := tlsHits.Load()
		p := tsc(t, tn.env(), "check", "--json", "--allow", fqdn, "http://web/", "http://other/", "web:9", "https://web/")
		if p.code != exitCheckFailed {
			t.Errorf("exit %d, want %d\n%s", p.code, exitCheckFailed, p.stderr)
		}
		var out checkOutput
		if err := json.Unmarshal([]byte(p.stdout.String()), &out); err != nil {
			t.Fatalf("%v\n%s", err, p.stdout)
		}
		if out.OK || len(out.Targets) != 4 || !strings.HasPrefix(out.Node, "tsconnect-") {
			t.Fatalf("%s", p.stdout)
		}
		web, other, closed, tlsWeb := out.Targets[0], out.Targets[1], out.Targets[2], out.Targets[3]
		if !web.OK || !web.Allowed || web.Rule != fqdn || !web.Reachable || web.HTTPStatus != 200 || !strings.HasPrefix(web.Address, "100.") {
			t.Errorf("http://web/: %+v", web)
		}
		if other.OK || other.Allowed || other.Reason != "no rule matches" || other.Reachable {
			t.Errorf("http://other/: %+v", other)
		}
		if closed.OK || !closed.Allowed || closed.Reachable || !strings.Contains(closed.Error, "refused") {
			t.Errorf("web:9: %+v", closed)
		}
		if tlsWeb.OK || !tlsWeb.Reachable || tlsWeb.HTTPStatus != 0 || !strings.Contains(tlsWeb.Error, "certificate") {
			t.Errorf("https://web/ with an untrusted certificate: %+v", tlsWeb)
		}
		if tlsHits.Load() == before {
			t.Error("no TLS connection reached the service")
		}
	})

	t.Run("insecure", func(t *testing.T) {
		t.Parallel()
		p := tsc(t, tn.env(), "check", "--insecure", "--json", "https://web/")
		var out checkOutput
		if err := json.Unmarshal([]byte(p.stdout.String()), &out); err != nil {
			t.Fatalf("%v\n%s", err, p.stdout)
		}
		if p.code != 0 || !out.OK || out.Targets[0].HTTPStatus != 200 || out.Targets[0].Rule != "<empty allowlist>" {
			t.Errorf("exit %d\n%s\n%s", p.code, p.stdout, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "tsconnect: warning: no allowlist") {
			t.Errorf("no warning about the missing allowlist:\n%s", p.stderr)
		}
	})
}
