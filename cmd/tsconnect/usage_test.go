package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestUsage runs the binary on command lines that fail (or print help)
// before any node is created, and checks exit codes and messages.
func TestUsage(t *testing.T) {
	dir := t.TempDir()
	noSock := filepath.Join(dir, "none.sock")
	closedURL := "https://" + closedAddr(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // the subtests are parallel: they run after this function returns
	busyAddr := busy.Addr().String()
	for _, tc := range []struct {
		name        string
		env         []string
		args        []string
		code        int
		stdout      []string
		stderr      []string
		notInStderr []string
	}{
		{name: "no subcommand", args: nil, code: 2, stderr: []string{"tsconnect: error: no subcommand given", "tsconnect: hint: "}},
		{name: "unknown subcommand", args: []string{"bogus"}, code: 2, stderr: []string{`tsconnect: error: unknown subcommand "bogus"`, "tsconnect: hint: run 'tsconnect help'"}},
		{name: "flag before subcommand", args: []string{"-v", "run"}, code: 2, stderr: []string{"tsconnect: error: flag -v before the subcommand"}},
		{name: "--help", args: []string{"--help"}, code: 0, stdout: []string{"Subcommands:", "Exit status:", "Examples:", "tsconnect run --allow"}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"Subcommands:", "  3    auth"}},
		{name: "help run", args: []string{"help", "run"}, code: 0, stdout: []string{"Usage: tsconnect run", "--auth-key-file", "$TSCONNECT_ALLOW"}},
		{name: "run --help", args: []string{"run", "--help"}, code: 0, stdout: []string{"Usage: tsconnect run", "Examples:", "--forward LOCAL=REMOTE", "--vault-path"}},
		{name: "up -h", args: []string{"up", "-h"}, code: 0, stdout: []string{"Usage: tsconnect up", "--ready-file", "--control-socket"}},
		{name: "check --help", args: []string{"check", "--help"}, code: 0, stdout: []string{"Usage: tsconnect check", "--insecure", "--json"}},
		{name: "status --help", args: []string{"status", "--help"}, code: 0, stdout: []string{"Usage: tsconnect status", "--control-socket"}},
		{name: "version", args: []string{"version"}, code: 0, stdout: []string{"tsconnect dev\n", "go1.", "tailscale.com v1."}},
		{name: "--version", args: []string{"--version"}, code: 0, stdout: []string{"tailscale.com v1."}},

		{name: "nc --help", args: []string{"nc", "--help"}, code: 0, stdout: []string{"Usage: tsconnect nc", "ProxyCommand='tsconnect nc %h:%p'", "--proxy URL"}},
		{name: "nc without proxy", env: []string{"ALL_PROXY=", "all_proxy="}, args: []string{"nc", "db:22"}, code: 2,
			stderr: []string{"tsconnect: error: no proxy: ALL_PROXY is not set", "tsconnect: hint: run it under 'tsconnect run'"}},
		{name: "nc bad target", args: []string{"nc", "db"}, code: 2, stderr: []string{`tsconnect: error: "db": want HOST:PORT`}},
		{name: "nc proxy down", args: []string{"nc", "--proxy", "socks5h://" + closedAddr(t), "db:22"}, code: 1,
			stderr: []string{"tsconnect: error: db:22: cannot reach the proxy at"}},
		{name: "max-clients 0", args: []string{"run", "--max-clients", "0", "--", "true"}, code: 2,
			stderr: []string{"tsconnect: error: --max-clients must be at least 1 and --max-clients-per-user at least -1 (got 0, 0)"}},
		{name: "max-clients-per-user -2", args: []string{"up", "--max-clients-per-user=-2"}, code: 2,
			stderr: []string{"--max-clients-per-user at least -1 (got 2048, -2)"}},
		{name: "isolate: no such mode", args: []string{"run", "--isolate=vm", "--", "true"}, code: 2,
			stderr: []string{`tsconnect: error: --isolate "vm": want netns, landlock, or auto`}},
		{name: "isolate: bad denied-DNS answer", args: []string{"run", "--isolate-deny-dns=servfail", "--", "true"}, code: 2,
			stderr: []string{`tsconnect: error: --isolate-deny-dns "servfail": want nxdomain or refused`}},
		{name: "run without command", args: []string{"run"}, code: 2, stderr: []string{"tsconnect: error: no command to run", "tsconnect: hint: run 'tsconnect run --help'"}},
		{name: "bad allow names the entry", args: []string{"run", "--allow", "web.corp.example,ex ample.com", "--", "true"}, code: 2,
			stderr: []string{`tsconnect: error: --allow: entry 2 "ex ample.com": name has a space`, "tsconnect: hint: entries look like"}},
		{name: "bad allow from env", env: []string{"TSCONNECT_ALLOW=*foo.example"}, args: []string{"check", "web:80"}, code: 2,
			stderr: []string{`tsconnect: error: --allow: entry 1 "*foo.example"`}},
		{name: "key as a flag", args: []string{"run", "--auth-key", "tskey-auth-secret", "--", "true"}, code: 2,
			stderr: []string{"not defined: -auth-key", "never a flag value"}, notInStderr: []string{"tskey-auth-secret"}},
		{name: "vault token as a flag", args: []string{"up", "--vault-token=hvs.secret"}, code: 2,
			stderr: []string{"never a flag value"}, notInStderr: []string{"hvs.secret"}},
		{name: "bad env value", env: []string{"TSCONNECT_TIMEOUT=soon"}, args: []string{"run", "--", "true"}, code: 2,
			stderr: []string{`TSCONNECT_TIMEOUT="soon": invalid value for --timeout`}},
		{name: "flag wins over env", env: []string{"TSCONNECT_TIMEOUT=soon"}, args: []string{"run", "--timeout", "1s", "--tags", "sandbox", "--", "true"}, code: 2,
			stderr: []string{`--tags: "sandbox" is not a tag`}},
		{name: "vault flag without path", args: []string{"run", "--vault-role-id", "r1", "--", "true"}, code: 2,
			stderr: []string{"--vault-role-id has no effect without --vault-path"}},
		{name: "two key sources", args: []string{"run", "--auth-key-file", "/k", "--vault-path", "secret/ts", "--", "true"}, code: 2,
			stderr: []string{"--auth-key-file and --vault-path are mutually exclusive"}},
		{name: "bad vault auth", args: []string{"run", "--vault-path", "secret/ts", "--vault-auth", "ldap", "--", "true"}, code: 2,
			stderr: []string{`--vault-auth "ldap"`}},
		{name: "forward not loopback", args: []string{"run", "--forward", "0.0.0.0:5432=db:5432", "--", "true"}, code: 2,
			stderr: []string{"is not a loopback address"}},
		{name: "forward malformed", args: []string{"up", "--forward", "5432"}, code: 2, stderr: []string{"want LOCAL=REMOTE"}},
		{name: "forward denied before joining", args: []string{"run", "--allow", "web.corp.example", "--forward", "5432=db.corp.example:5432", "--", "true"}, code: 2,
			stderr:      []string{"tsconnect: error: --forward 5432=db.corp.example:5432: db.corp.example:5432 is not allowed", "tsconnect: hint: add db.corp.example"},
			notInStderr: []string{"joining"}},
		{name: "proxy user without password", args: []string{"up", "--proxy-user", "agent"}, code: 2, stderr: []string{"--proxy-user and --proxy-password-file go together"}},
		{name: "listen not loopback", args: []string{"up", "--listen", "0.0.0.0:1055"}, code: 2,
			stderr: []string{"--listen 0.0.0.0:1055 is not a loopback address"}},
		{name: "listen port in use", args: []string{"run", "--listen", busyAddr, "--", "true"}, code: 1,
			stderr:      []string{"tsconnect: error: --listen: listen tcp " + busyAddr, "address already in use", "tsconnect: hint: is another tsconnect running"},
			notInStderr: []string{"joining"}},
		{name: "forward port in use", args: []string{"up", "--listen", "127.0.0.1:0", "--control-socket", filepath.Join(dir, "fwd.sock"), "--forward", busyAddr + "=db:5432"}, code: 1,
			stderr:      []string{"tsconnect: error: --forward " + busyAddr + "=db:5432: listen tcp", "address already in use"},
			notInStderr: []string{"joining"}},
		{name: "up with arguments", args: []string{"up", "curl"}, code: 2, stderr: []string{`unexpected argument "curl"`}},
		{name: "command not found", args: []string{"run", "--", "no-such-command-tsconnect"}, code: 127,
			stderr: []string{"tsconnect: error: exec: \"no-such-command-tsconnect\": executable file not found"}, notInStderr: []string{"joining"}},
		{name: "check without targets", args: []string{"check"}, code: 2, stderr: []string{"no targets"}},
		{name: "check target without port", args: []string{"check", "web"}, code: 2, stderr: []string{`target "web"`}},
		{name: "status with nothing running", args: []string{"status", "--control-socket", noSock}, code: 1,
			stderr: []string{"tsconnect: error: no tsconnect up is running at " + noSock, "tsconnect: hint: start one with `tsconnect up`"}},

		{name: "no key", args: []string{"run", "--control-url", closedURL, "--", "true"}, code: 3,
			stderr: []string{"tsconnect: error: getting the auth key: auth key is empty: neither TS_AUTHKEY nor TS_AUTH_KEY is set", "tsconnect: hint: set TS_AUTHKEY"}},
		{name: "missing key file", args: []string{"check", "--control-url", closedURL, "--auth-key-file", filepath.Join(dir, "nokey"), "web:80"}, code: 3,
			stderr: []string{"key file " + filepath.Join(dir, "nokey"), "tsconnect: hint: "}},
		{name: "vault unreachable", env: []string{"VAULT_TOKEN=hvs.must-not-leak", "VAULT_ADDR=http://" + closedAddr(t)},
			args: []string{"run", "--control-url", closedURL, "--vault-path", "secret/tailscale", "--", "true"}, code: 3,
			stderr: []string{"cannot reach vault", "tsconnect: hint: check VAULT_ADDR"}, notInStderr: []string{"must-not-leak"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tsc(t, tc.env, tc.args...)
			stdout, stderr := p.stdout.String(), p.stderr.String()
			if p.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", p.code, tc.code, stdout, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tc.notInStderr {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr has %q:\n%s", w, stderr)
				}
			}
			if tc.code != 0 {
				if !strings.Contains(stderr, "tsconnect: error: ") {
					t.Errorf("no 'tsconnect: error:' line:\n%s", stderr)
				}
				for _, line := range strings.Split(stderr, "\n") {
					if msg, ok := strings.CutPrefix(line, "tsconnect: error: "); ok {
						if msg == "" || strings.HasSuffix(msg, ".") || capitalized.MatchString(msg) {
							t.Errorf("error line not in style (lower case, no final period): %q", line)
						}
					}
				}
			}
		})
	}
}

// TestRunInProcess calls run the way main does.
func TestRunInProcess(t *testing.T) {
	ctx := context.Background()
	if code, out, _ := runInProcess(ctx, "help", "check"); code != 0 || !strings.Contains(out, "Usage: tsconnect check") {
		t.Errorf("help check: %d %q", code, out)
	}
	if code, _, errs := runInProcess(ctx, "run", "--listen"); code != 2 || !strings.Contains(errs, "flag needs an argument: -listen") {
		t.Errorf("run --listen: %d %q", code, errs)
	}
	if code, out, _ := runInProcess(ctx, "version"); code != 0 || !strings.HasPrefix(out, "tsconnect "+version) {
		t.Errorf("version: %d %q", code, out)
	}
}

// capitalized matches a sentence-case start ("Cannot …"), not a variable
// name ("TSCONNECT_TIMEOUT=…").
var capitalized = regexp.MustCompile(`^[A-Z][a-z]`)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCheckIsolate: check --isolate says which tiers work here, agreeing
// with what run --isolate would decide before joining: as root with a TUN
// device, netns; Landlock where the kernel has ABI 4.
func TestCheckIsolate(t *testing.T) {
	p := tsc(t, nil, "check", "--isolate")
	out := p.stdout.String()
	t.Logf("exit %d\n%s%s", p.code, out, p.stderr.String())
	_, tunErr := os.Stat("/dev/net/tun")
	netns := os.Geteuid() == 0 && tunErr == nil
	landlock := landlockAvailable() == nil
	for _, c := range []struct {
		tier string
		ok   bool
	}{{"netns", netns}, {"landlock", landlock}} {
		want := "isolate " + c.tier + ":"
		if c.ok {
			want += " available ("
		}
		if line := lineWith(out, "isolate "+c.tier+":"); !strings.HasPrefix(strings.Join(strings.Fields(line), " "), want) {
			t.Errorf("%s: %q, want it to start %q", c.tier, line, want)
		}
	}
	switch {
	case netns && (p.code != 0 || !strings.Contains(out, "isolate=auto: netns\n")):
		t.Errorf("auto should pick netns: exit %d", p.code)
	case !netns && landlock && (p.code != 0 || !strings.Contains(out, "isolate=auto: landlock\n")):
		t.Errorf("auto should pick landlock: exit %d", p.code)
	case !netns && !landlock && p.code != 1:
		t.Errorf("no tier: exit %d, want 1", p.code)
	}
}

func lineWith(s, prefix string) string {
	for line := range strings.Lines(s) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// TestCheckIsolateAsUser: for a user other than root the netns tier goes
// through the relay, which makes a user namespace; on a machine whose
// /dev/net/tun only root may open (this one) the probe gets that far and
// names the device, not the namespace, as what is missing.
func TestCheckIsolateAsUser(t *testing.T) {
	fi, err := os.Stat("/dev/net/tun")
	if os.Geteuid() != 0 || err != nil {
		t.Skip("needs root (to run as nobody) and /dev/net/tun")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir's own parent
	bin := filepath.Join(dir, "tsconnect")
	b, err := os.ReadFile(tsconnectBin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check", "--isolate")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody (%v):\n%s", err, out)
	line := strings.Join(strings.Fields(lineWith(string(out), "isolate netns:")), " ")
	want := "isolate netns: available ("
	if fi.Mode().Perm()&0o006 != 0o006 {
		want = "isolate netns: unavailable: /dev/net/tun: permission denied"
	}
	if !strings.HasPrefix(line, want) {
		t.Errorf("got %q, want it to start %q", line, want)
	}
	if strings.Contains(string(out), "warning") {
		t.Errorf("warnings as another user:\n%s", out)
	}
}
