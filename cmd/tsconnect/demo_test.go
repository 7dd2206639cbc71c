package main

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demoEnv is a clean environment without tailscale's knobs: the demo must
// set what keeps it on loopback itself, as it would on a laptop.
// (internal/demonet's tests capture its packets.)
func demoEnv() []string {
	var env []string
	for _, kv := range cleanEnv() {
		if !strings.HasPrefix(kv, "TS_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestDemo: the walkthrough tells the whole story and exits 0.
func TestDemo(t *testing.T) {
	t.Parallel()
	p := startDemo(t)
	if code := p.wait(90 * time.Second); code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	out := p.stdout.String()
	for _, re := range []string{
		`demo control plane — not for production`,
		`control plane  http://127\.0\.0\.1:\d+\n`,
		`web +web\.demo\.test +100\.\d+\.\d+\.\d+ +tag:web`,
		`1\. join   (tsconnect-[0-9a-f-]{36}) joined as 100\.\d+\.\d+\.\d+ fd7a:\S+ \(tag:sandbox\), ephemeral`,
		`proxy 127\.0\.0\.1:\d+ \(SOCKS5 and HTTP on one port\); allowlist web\.demo\.test\n`,
		`2\. allow  GET http://web/ through the HTTP proxy: 200 OK "hello from web via the tailnet"`,
		`3\. deny   GET http://secret-db/ through the HTTP proxy: 403 Forbidden ".*secret-db\.demo\.test:80.*not allowed`,
		`4\. deny   SOCKS5 CONNECT secret-db:5432: connection not allowed by ruleset \(reply 0x02\)`,
		`secret-db accepted 0 connections`,
		`5\. deny   Host: secret-db inside a SOCKS5 tunnel to web:80: 403 Forbidden "tsconnect: HTTP Host \\"secret-db\\": the tunnel is for web\.demo\.test; secret-db\.demo\.test is not allowed \(no rule matches\)"`,
		`6\. leave  tsconnect-\S+ logged out and left the tailnet in \d+(\.\d+)?[mµ]?s; nodes now: secret-db, web\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("stdout lacks %q:\n%s", re, out)
		}
	}
	if !strings.Contains(p.stderr.String(), "tsconnect: ready in ") {
		t.Errorf("stderr lacks the ready line:\n%s", p.stderr)
	}
	t.Logf("demo walkthrough in %v:\n%s", p.dur.Round(time.Millisecond), out)
}

// TestDemoCommand: with a command, demo runs it with the proxy
// environment against the demo tailnet and exits with its status.
func TestDemoCommand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"curl allowed", []string{"--", "curl", "-sS", "http://web/"}, 0, "hello from web via the tailnet\n"},
		{"curl denied", []string{"--", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://secret-db/"}, 0, "403"},
		{"curl socks5h", []string{"--", "sh", "-c", `curl -sS -x "$ALL_PROXY" http://web.demo.test/`}, 0, "hello from web via the tailnet\n"},
		{"wider allowlist", []string{"--allow", ".demo.test", "--", "curl", "-sS", "http://secret-db/"}, 0, "secret-db: this service is not on the allowlist"},
		{"forward", []string{"--forward", "127.0.0.1:0=web:80", "--", "sh", "-c", "exit 0"}, 0, ""},
		{"exit status", []string{"--", "sh", "-c", "exit 7"}, 7, ""},
		// --isolate=netns: a client told to ignore proxies still reaches
		// web (by its short name, through the namespace's resolver), and
		// secret-db does not resolve.
		{"isolate netns", []string{"--isolate=netns", "--", "sh", "-c", `curl -sS --noproxy '*' http://web/; curl -sS http://secret-db/ 2>&1; echo "exit $?"`}, 0,
			"hello from web via the tailnet\ncurl: (6) Could not resolve host: secret-db\nexit 6"},
		// --timeout bounds starting only: a command still running when it
		// has passed keeps its proxy. (The child sleeps the whole timeout,
		// which began before the join, so it is past the deadline.)
		{"outlives timeout", []string{"--timeout", "20s", "--", "sh", "-c", "sleep 20; curl -sS -m 10 http://web/"}, 0, "hello from web via the tailnet\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startDemo(t, tc.args...)
			if code := p.wait(90 * time.Second); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, p.stdout, p.stderr)
			}
			if !strings.HasPrefix(p.stdout.String(), tc.out) {
				t.Errorf("stdout %q, want it to start with %q\nstderr:\n%s", p.stdout, tc.out, p.stderr)
			}
		})
	}
}

// TestDemoListeners: everything the demo starts (control plane, relay,
// STUN, two service nodes, the connector with its proxy and a forward)
// listens on 127.0.0.1 only.
func TestDemoListeners(t *testing.T) {
	t.Parallel()
	p := startDemo(t, "--forward", "127.0.0.1:0=web:80", "--", "sh", "-c", "echo ready; exec sleep 120")
	p.waitOutput(p.stdout, "(?m)^ready$", 60*time.Second)
	checkLoopbackListeners(t, p.cmd.Process.Pid, 4) // control, relay, proxy, forward at least
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(30 * time.Second)
}

// TestDemoUsage: the demo's own mistakes are usage errors, found before
// anything starts.
func TestDemoUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--allow", "ex ample.test"}, exitUsage, `--allow: entry 1 "ex ample.test"`},
		{[]string{"--forward", "5432=secret-db.demo.test:5432"}, exitUsage, "is not allowed"},
		{[]string{"--", "no-such-command-tsconnect"}, exitNotFound, "no-such-command-tsconnect"},
	} {
		p := startDemo(t, tc.args...)
		if code := p.wait(30 * time.Second); code != tc.code || !strings.Contains(p.stderr.String(), tc.err) {
			t.Errorf("demo %q: exit %d, want %d with %q\n%s", tc.args, code, tc.code, tc.err, p.stderr)
		}
		if strings.Contains(p.stderr.String(), "starting the demo tailnet") {
			t.Errorf("demo %q started the tailnet before failing:\n%s", tc.args, p.stderr)
		}
	}
}

// startDemo starts `tsconnect demo args…` in demoEnv.
func startDemo(t *testing.T, args ...string) *proc {
	t.Helper()
	return startTscEnv(t, demoEnv(), append([]string{"demo"}, args...)...)
}
