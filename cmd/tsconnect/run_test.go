package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestJoinErrors: a key the control plane rejects, and a control plane
// that does not answer, each fail with their own exit code and a hint.
func TestJoinErrors(t *testing.T) {
	tn := newTailnet(t, "")
	t.Run("bad key", func(t *testing.T) {
		t.Parallel()
		const bogus = "hskey-auth-AAAAAAAAAAAA-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
		p := tsc(t, []string{"TS_AUTHKEY=" + bogus}, "run", "--control-url", tn.ctl.URL, "--", "true")
		stderr := p.stderr.String()
		if p.code != exitAuth {
			t.Errorf("exit %d, want %d\n%s", p.code, exitAuth, stderr)
		}
		if p.dur > 10*time.Second {
			t.Errorf("took %v: a rejected key must fail fast", p.dur)
		}
		for _, w := range []string{"tsconnect: joining tailnet via " + tn.ctl.URL + " (key from env TS_AUTHKEY/TS_AUTH_KEY)", "tsconnect: error: joining " + tn.ctl.URL, "tsconnect: hint: "} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
		if strings.Contains(stderr, bogus) {
			t.Errorf("stderr shows the key:\n%s", stderr)
		}
		t.Logf("bad key: exit %d in %v", p.code, p.dur.Round(time.Millisecond))
	})
	t.Run("unreachable control", func(t *testing.T) {
		t.Parallel()
		url := "https://" + closedAddr(t)
		p := tsc(t, tn.env(), "check", "--control-url", url, "--timeout", "3s", "web:80")
		stderr := p.stderr.String()
		if p.code != exitUnreachable {
			t.Errorf("exit %d, want %d\n%s", p.code, exitUnreachable, stderr)
		}
		for _, w := range []string{"tsconnect: error: joining " + url + ": control plane unreachable", "tsconnect: hint: check --control-url (or TS_CONTROL_URL)"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
		t.Logf("unreachable: exit %d in %v", p.code, p.dur.Round(time.Millisecond))
	})
}

// TestRunExitCode: run exits with the command's status, and the node
// leaves the tailnet.
func TestRunExitCode(t *testing.T) {
	tn := newTailnet(t, "")
	for _, tc := range []struct {
		name, script string
		want         int
	}{
		{"exit-seven", "exit 7", 7},
		{"crash", "kill -SEGV $$", 128 + int(syscall.SIGSEGV)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tsc(t, tn.env(), "run", "--hostname", tc.name, "--listen", "127.0.0.1:0", "--", "sh", "-c", tc.script)
			if p.code != tc.want {
				t.Fatalf("exit %d, want %d\n%s", p.code, tc.want, p.stderr)
			}
			tn.waitGone(t, tc.name, time.Now(), "tsconnect exited")
		})
	}
}

// TestRunEnvironment: the command sees the proxy variables and none of the
// secrets; the key appears nowhere in tsconnect's own output, verbose
// tailnet logs included.
func TestRunEnvironment(t *testing.T) {
	tn := newTailnet(t, "")
	const vaultToken = "hvs.vault-token-must-not-leak"
	const baoToken = "s.openbao-token-must-not-leak"
	p := tsc(t, tn.env("VAULT_TOKEN="+vaultToken, "BAO_TOKEN="+baoToken, "BAO_ADDR=http://127.0.0.1:1", "TS_AUTH_KEY="+tn.key, "HTTPS_PROXY=http://stale.example:1", "KEEP_ME=yes", "JAVA_TOOL_OPTIONS=-Xmx64m"),
		"run", "-v", "--listen", "127.0.0.1:0", "--", "env")
	stdout, stderr := p.stdout.String(), p.stderr.String()
	if p.code != 0 {
		t.Fatalf("exit %d\n%s", p.code, stderr)
	}
	m := p.waitOutput(p.stderr, `\(proxy (127\.0\.0\.1:\d+)\)`, time.Second)
	addr := m[1]
	for _, w := range []string{
		"ALL_PROXY=socks5h://" + addr + "\n", "all_proxy=socks5h://" + addr + "\n",
		"HTTP_PROXY=http://" + addr + "\n", "http_proxy=http://" + addr + "\n",
		"HTTPS_PROXY=http://" + addr + "\n", "https_proxy=http://" + addr + "\n",
		"NO_PROXY=localhost,127.0.0.1,::1\n", "KEEP_ME=yes\n", "NODE_USE_ENV_PROXY=1\n",
		"JAVA_TOOL_OPTIONS=-Xmx64m -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=" + addr[strings.LastIndexByte(addr, ':')+1:] + " -Dhttps.proxyHost=127.0.0.1",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("command's environment lacks %q", w)
		}
	}
	for _, bad := range []string{tn.key, vaultToken, baoToken, "TS_AUTHKEY=", "TS_AUTH_KEY=", "VAULT_TOKEN=", "BAO_TOKEN=", "BAO_ADDR=", "stale.example"} {
		if strings.Contains(stdout, bad) {
			t.Errorf("command's environment has %q", bad)
		}
	}
	for _, secret := range []string{tn.key, vaultToken, baoToken} {
		if strings.Contains(stderr, secret) {
			t.Errorf("tsconnect's stderr (-v) shows a secret")
		}
	}
	if len(stderr) < 2000 {
		t.Errorf("-v printed only %d bytes: where are the tailnet logs?\n%s", len(stderr), stderr)
	}
}

// TestRootChildEnviron: a wrapped command running as root, which may read
// its parent's /proc files despite PR_SET_DUMPABLE 0, finds no key or
// token in tsconnect's /proc/<pid>/environ or cmdline: tsconnect zeroes
// their values in its initial environment block.
func TestRootChildEnviron(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only a root child can read an undumpable parent's /proc/<pid>/environ")
	}
	tn := newTailnet(t, "")
	const vaultToken = "hvs.vault-token-must-not-leak"
	const baoToken = "s.openbao-token-must-not-leak"
	p := tsc(t, tn.env("VAULT_TOKEN="+vaultToken, "BAO_TOKEN="+baoToken, "TS_AUTH_KEY="+tn.key, "KEEP_ME=yes"),
		"run", "--listen", "127.0.0.1:0", "--", "sh", "-c", `tr '\0' '\n' < /proc/$PPID/environ && echo --- && tr '\0' ' ' < /proc/$PPID/cmdline`)
	out := p.stdout.String()
	if p.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", p.code, out, p.stderr)
	}
	if !strings.Contains(out, "\nKEEP_ME=yes\n") || !strings.Contains(out, "\nTS_AUTH_KEY=\n") || !strings.Contains(out, "---\n") {
		t.Fatalf("the child did not read tsconnect's environ and cmdline (else this proves nothing):\n%q", out)
	}
	for _, secret := range []string{tn.key, vaultToken, baoToken} {
		if strings.Contains(out, secret) {
			t.Errorf("a root child read a secret from tsconnect's /proc/<pid>/environ or cmdline")
		}
	}
	// What it can still read, tsconnect says.
	if !strings.Contains(p.stderr.String(), "tsconnect: warning: sh runs as root, as tsconnect does, so it may read tsconnect's memory") {
		t.Errorf("no warning that a root child can read tsconnect's memory:\n%s", p.stderr)
	}
}

// TestRunCurl: curl, with nothing but the environment tsconnect gives it,
// reaches a service on the tailnet; with an allowlist that leaves the
// service out, it gets a 403 from the proxy and the service sees nothing.
func TestRunCurl(t *testing.T) {
	tn := newTailnet(t, "web")
	// No tn.web.WaitPeer: the new node dials out at once, and the service
	// accepts its handshake (a ping from the service to a brand-new node, by
	// contrast, waits for WireGuard's 5 s retry).
	p := tsc(t, tn.env(), "run", "--listen", "127.0.0.1:0", "--allow", "web."+tailnettest.BaseDomain+":80",
		"--", "curl", "-sS", "--max-time", "20", "http://web/through-proxy")
	if p.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	if got := p.stdout.String(); got != "hello from web /through-proxy" {
		t.Errorf("curl printed %q", got)
	}

	// With proxy authentication, the credentials travel in the proxy URLs.
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret pass\n"), 0o600)
	p = tsc(t, tn.env(), "run", "--listen", "127.0.0.1:0", "--proxy-user", "agent", "--proxy-password-file", pwFile,
		"--", "sh", "-c", `echo "$ALL_PROXY"; curl -sS --max-time 20 http://web/with-auth; echo; unset http_proxy; curl -sS --max-time 20 http://web/socks-auth`)
	if p.code != 0 || !strings.Contains(p.stdout.String(), "hello from web /with-auth\nhello from web /socks-auth") ||
		!regexp.MustCompile(`^socks5h://agent:s3cret%20pass@127\.0\.0\.1:\d+\n`).MatchString(p.stdout.String()) {
		t.Errorf("with proxy auth: exit %d\n%s\n%s", p.code, p.stdout, p.stderr)
	}

	before := tn.webHits.Load()
	p = tsc(t, tn.env(), "run", "--listen", "127.0.0.1:0", "--allow", "other."+tailnettest.BaseDomain, "--audit-log", "-",
		"--", "curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", "http://web/denied")
	if p.code != 0 || p.stdout.String() != "403" {
		t.Errorf("denied: exit %d, curl printed %q, want 403\n%s", p.code, p.stdout, p.stderr)
	}
	if !regexp.MustCompile(`(?m)^\{.*"host":"web\.` + tailnettest.BaseDomain + `".*"decision":"deny".*\}$`).MatchString(p.stderr.String()) {
		t.Errorf("no audit line for the denial on stderr:\n%s", p.stderr)
	}
	p = tsc(t, tn.env(), "run", "--listen", "127.0.0.1:0", "--allow", "other."+tailnettest.BaseDomain,
		"--", "sh", "-c", "unset http_proxy HTTP_PROXY; curl -sS --max-time 20 http://web/denied")
	if p.code != 97 { // curl: proxy handshake error (SOCKS5 reply: not allowed by ruleset)
		t.Errorf("curl through ALL_PROXY (socks5h) to a denied host: exit %d, want 97\n%s", p.code, p.stderr)
	}
	if n := tn.webHits.Load() - before; n != 0 {
		t.Errorf("the service saw %d connections from denied requests", n)
	}
}

// TestRunSignals: a signal to tsconnect reaches the command; tsconnect
// exits with the command's status and the node leaves the machine list
// within 2 s.
func TestRunSignals(t *testing.T) {
	tn := newTailnet(t, "")
	t.Run("SIGTERM", func(t *testing.T) {
		t.Parallel()
		// The command traps SIGTERM, so its exit status proves that it got
		// the signal from tsconnect.
		script := `trap 'kill $!; echo got-TERM; exit 42' TERM; echo child-ready; sleep 30 & wait`
		p := startTsc(t, tn.env(), "run", "--hostname", "sig-term", "--listen", "127.0.0.1:0", "--", "sh", "-c", script)
		p.waitOutput(p.stdout, "child-ready", 60*time.Second)
		sent := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(10 * time.Second); code != 42 {
			t.Errorf("exit %d, want the command's 42\n%s", code, p.stderr)
		}
		if !strings.Contains(p.stdout.String(), "got-TERM") {
			t.Errorf("the command did not get SIGTERM: %q", p.stdout)
		}
		tn.waitGone(t, "sig-term", sent, "SIGTERM")
	})
	t.Run("SIGINT", func(t *testing.T) {
		t.Parallel()
		p := startTsc(t, tn.env(), "run", "--hostname", "sig-int", "--listen", "127.0.0.1:0", "--", "sleep", "30")
		p.waitReady()
		time.Sleep(100 * time.Millisecond) // let sleep start
		sent := time.Now()
		p.cmd.Process.Signal(syscall.SIGINT)
		if code := p.wait(10 * time.Second); code != 128+int(syscall.SIGINT) {
			t.Errorf("exit %d, want 130 (sleep killed by SIGINT)\n%s", code, p.stderr)
		}
		tn.waitGone(t, "sig-int", sent, "SIGINT")
	})
}

// TestForwardDeniedAfterJoin: a forward to a short name the allowlist
// denies is refused once the name can be expanded, and the node leaves.
func TestForwardDeniedAfterJoin(t *testing.T) {
	tn := newTailnet(t, "")
	p := tsc(t, tn.env(), "run", "--hostname", "fwd-denied", "--listen", "127.0.0.1:0", "--allow", "web."+tailnettest.BaseDomain,
		"--forward", "127.0.0.1:0=secret:5432", "--", "true")
	stderr := p.stderr.String()
	if p.code != exitUsage {
		t.Errorf("exit %d, want %d\n%s", p.code, exitUsage, stderr)
	}
	for _, w := range []string{"tsconnect: error: --forward 127.0.0.1:0=secret:5432: secret:5432 is not allowed", "tsconnect: hint: add secret"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	tn.waitGone(t, "fwd-denied", time.Now(), "tsconnect exited")
}

// TestChildUser: with --child-user nobody, the command runs as nobody with
// no capabilities, and can neither open tsconnect's /proc/<pid>/mem or
// environ nor ptrace-attach to it; a root child could (TestRootChildEnviron
// shows what it still reads). Root as the child user, or an unknown user,
// is a usage error found before joining.
func TestChildUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can start a command as another user")
	}
	tn := newTailnet(t, "")
	probe := `id -u; grep CapEff /proc/self/status
cat /proc/$PPID/mem 2>&1 | head -1
cat /proc/$PPID/environ >/dev/null 2>&1 && echo "environ: read" || echo "environ: refused"
if command -v perl >/dev/null && [ "$(uname -m)" = x86_64 ]; then
	perl -e '$r = syscall(101, 16, $ARGV[0]+0, 0, 0); print "ptrace: ", ($r == -1 ? "$!" : "attached"), "\n"' $PPID
fi`
	p := tsc(t, tn.env(), "run", "--listen", "127.0.0.1:0", "--child-user", "nobody", "--", "sh", "-c", probe)
	out := p.stdout.String()
	if p.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", p.code, out, p.stderr)
	}
	t.Logf("the child says:\n%s", out)
	for _, want := range []string{"65534\n", "CapEff:\t0000000000000000\n", "Permission denied", "environ: refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("child output lacks %q", want)
		}
	}
	if strings.Contains(out, "ptrace: ") && !strings.Contains(out, "ptrace: Operation not permitted") {
		t.Errorf("the child could ptrace tsconnect")
	}
	if strings.Contains(p.stderr.String(), "runs as root") {
		t.Errorf("root warning printed for a child that is not root:\n%s", p.stderr)
	}

	for _, tc := range []struct{ user, want string }{
		{"root", "child user is root"},
		{"0:0", "child user is root"},
		{"no-such-user-here", "unknown user"},
		{"nobody:no-such-group", "unknown group"},
	} {
		p := tsc(t, tn.env(), "run", "--child-user", tc.user, "--", "true")
		if p.code != exitUsage || !strings.Contains(p.stderr.String(), tc.want) || strings.Contains(p.stderr.String(), "joining") {
			t.Errorf("--child-user %s: exit %d, want %d naming %q before joining:\n%s", tc.user, p.code, exitUsage, tc.want, p.stderr)
		}
	}
}
