package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

const examplePolicy = "../../examples/policy/agent.hujson"

// TestPolicyCommand: 'policy test' passes the example (the suite's run of
// its tests), fails a policy whose new rule opens a denied path, naming
// the test's and the rule's lines, and refuses a file it cannot read;
// 'policy explain' prints decisions with their rules; 'run --policy'
// refuses a failing policy before joining.
func TestPolicyCommand(t *testing.T) {
	ctx := context.Background()
	code, out, errOut := runInProcess(ctx, "policy", "test", examplePolicy)
	if code != exitOK || !strings.Contains(out, "ok   "+examplePolicy+": 18 tests pass (13 deny, 5 allow), 12 rules") {
		t.Fatalf("policy test example: exit %d\n%s%s", code, out, errOut)
	}

	src, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Someone opens Postgres to everything under the tailnet.
	opened := strings.Replace(string(src), `{"name": "no-vault", "deny": "vault.corp.ts.net"},`,
		`{"name": "no-vault", "deny": "vault.corp.ts.net"},
		{"name": "oops", "allow": ".corp.ts.net:5432"},`, 1)
	bad := filepath.Join(dir, "bad.hujson")
	broken := filepath.Join(dir, "broken.hujson")
	os.WriteFile(bad, []byte(opened), 0o600)
	os.WriteFile(broken, []byte(`{"rules": [{"allow": "ex ample.com"}]}`), 0o600)

	code, out, _ = runInProcess(ctx, "policy", "test", bad)
	for _, want := range []string{
		"FAIL " + bad + ":33: postgres.corp.ts.net:5432: want deny, got allow: matches .corp.ts.net:5432 (rule \"oops\") [line 28]",
		"FAIL " + bad + ":34: postgres:5432: want deny",
		"FAIL " + bad + ": 2 of 18 tests fail",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("policy test (opened): lacks %q:\n%s", want, out)
		}
	}
	if code != exitFailure {
		t.Errorf("policy test (opened): exit %d, want 1", code)
	}
	code, _, errOut = runInProcess(ctx, "policy", "test", broken)
	if code != exitUsage || !strings.Contains(errOut, broken+`:1: rule 1: "ex ample.com": name has a space`) {
		t.Errorf("policy test (broken): exit %d\n%s", code, errOut)
	}

	code, out, _ = runInProcess(ctx, "policy", "explain", examplePolicy, "https://grafana/", "ADMIN.mcp.corp.ts.net.:443")
	for _, want := range []string{
		`https://grafana/ (checked as grafana.corp.ts.net): allow: matches grafana.corp.ts.net:443 (rule "metrics") [line 18]`,
		`ADMIN.mcp.corp.ts.net.:443 (checked as admin.mcp.corp.ts.net): deny: matches !admin.mcp.corp.ts.net (rule "no-admin") [line 23]`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if code != exitCheckFailed {
		t.Errorf("explain with a denial: exit %d, want %d", code, exitCheckFailed)
	}
	code, out, _ = runInProcess(ctx, "policy", "explain", "--addr", "100.64.10.7", examplePolicy, "agent-db:5432")
	if code != exitCheckFailed || !strings.Contains(out, `deny: address 100.64.10.7 matches !100.64.10.0/24 (rule "no-prod-db")`) {
		t.Errorf("explain --addr: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--policy", bad, "--", "true"}, "--policy: " + bad + ": 2 of 18 tests fail:\n  " + bad + ":33: postgres.corp.ts.net:5432"},
		{[]string{"up", "--policy", broken}, "--policy: " + broken + ":1: rule 1"},
		{[]string{"check", "--policy", examplePolicy, "--allow", ".a.example", "web:80"}, "--allow and --policy are mutually exclusive"},
		{[]string{"demo", "--policy", bad}, "2 of 18 tests fail"},
		{[]string{"policy", "lint", examplePolicy}, `unknown policy command "lint"`},
		{[]string{"policy", "explain", examplePolicy}, "want FILE and at least one TARGET"},
	} {
		code, _, errOut := runInProcess(ctx, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "joining") {
			t.Errorf("%v: exit %d, want 2 and %q before joining:\n%s", tc.args, code, tc.want, errOut)
		}
	}
}

// TestUpPolicy: 'up --policy' enforces the file's deny rule over its allow
// rule (SOCKS5 0x02, an HTTP 403 naming the rule; the service sees
// nothing), and status and metrics show every rule with its name and hits.
func TestUpPolicy(t *testing.T) {
	tn := newTailnet(t, "web")
	dir := t.TempDir()
	web := "web." + tailnettest.BaseDomain
	policy := filepath.Join(dir, "p.hujson")
	os.WriteFile(policy, []byte(fmt.Sprintf(`{
		// web, but not its echo port
		"tailnet": %q,
		"rules": [
			{"name": "web", "allow": %q},
			{"name": "no-echo", "deny": "%s:7"},
			{"name": "spare", "allow": "db.%s:5432"},
		],
		"tests": [
			{"dst": "web:80", "expect": "allow", "rule": "web"},
			{"dst": "web:7", "expect": "deny", "rule": "no-echo"},
		],
	}`, tailnettest.BaseDomain, web, web, tailnettest.BaseDomain)), 0o600)
	sock := filepath.Join(dir, "ctl.sock")
	p := startTsc(t, tn.env(), "up", "--policy", policy, "--listen", "127.0.0.1:0", "--control-socket", sock)
	p.waitOutput(p.stderr, "(?m)^ready$", 60*time.Second)
	proxy := regexpAll(p.stdout.String(), `# tsconnect: proxy (\S+)`)[0][1]

	if out, code := curlOut(t, "-x", "socks5h://"+proxy, "http://web/"); code != 0 || !strings.Contains(out, "hello from web") {
		t.Errorf("curl web through the policy: exit %d %q", code, out)
	}
	before := tn.echo.Load()
	if out, code := curlOut(t, "-x", "http://"+proxy, "-p", "-w", "%{http_connect}", "http://web:7/"); code == 0 || !strings.Contains(out, "403") {
		t.Errorf("curl CONNECT web:7: exit %d %q, want the proxy's 403", code, out)
	}
	if out, code := curlOut(t, "-x", "http://"+proxy, "http://web:7/"); !strings.Contains(out, "!"+web+":7") {
		t.Errorf("plain http to web:7: exit %d, body %q does not name the deny rule", code, out)
	}
	if _, code := curlOut(t, "-x", "socks5h://"+proxy, "http://web:7/"); code != 97 {
		t.Errorf("curl socks5h web:7: exit %d, want 97 (the proxy refused: not allowed by ruleset)", code)
	}
	if n := tn.echo.Load() - before; n != 0 {
		t.Errorf("the echo service saw %d connections, want 0", n)
	}

	s := tsc(t, nil, "status", "--control-socket", sock)
	for _, want := range []string{
		"allowlist  " + policy + ": " + web + ",!" + web + ":7,db.",
		`rule       ` + web + ` "web": 1 hit`,
		`rule       !` + web + `:7 "no-echo": 3 hits`,
		`rule       db.` + tailnettest.BaseDomain + `:5432 "spare": never used`,
	} {
		if !strings.Contains(s.stdout.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, s.stdout)
		}
	}
	out, code := curlOut(t, "--unix-socket", sock, "http://tsconnect/metrics")
	if m := parseProm(t, out); code != 0 || m[`tsconnect_rule_hits_total{rule="!`+web+`:7",name="no-echo"}`] != 3 {
		t.Errorf("metrics: exit %d\n%s", code, out)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM\n%s", code, p.stderr)
	}
}
