package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestUp: up becomes ready (ready file, "ready" line, export lines),
// answers status, forwards plain TCP clients to a tailnet service (with
// half-close), refuses a second up on the same socket, and on SIGTERM
// leaves the tailnet and removes its files.
func TestUp(t *testing.T) {
	tn := newTailnet(t, "web")
	dir := t.TempDir()
	readyFile := filepath.Join(dir, "ready")
	envFile := filepath.Join(dir, "env")
	sock := filepath.Join(dir, "ctl.sock")
	p := startTsc(t, tn.env("TSCONNECT_ALLOW=web."+tailnettest.BaseDomain), "up",
		"--hostname", "up-node", "--listen", "127.0.0.1:0",
		"--ready-file", readyFile, "--env-file", envFile, "--control-socket", sock,
		"--forward", "127.0.0.1:0=web:80", "--forward", "127.0.0.1:0=web:7", "--metrics-listen", "127.0.0.1:0")
	p.waitOutput(p.stderr, "(?m)^ready$", 60*time.Second)
	var metricsAddr string
	if m := regexpAll(p.stderr.String(), `metrics on http://(127\.0\.0\.1:\d+)/metrics`); len(m) == 1 {
		metricsAddr = m[0][1]
	} else {
		t.Fatalf("no metrics line:\n%s", p.stderr)
	}

	b, err := os.ReadFile(readyFile)
	if err != nil {
		t.Fatalf("ready file: %v", err)
	}
	proxy := strings.TrimSpace(string(b))
	if _, err := netip.ParseAddrPort(proxy); err != nil {
		t.Fatalf("ready file holds %q: %v", b, err)
	}
	if !strings.Contains(p.stdout.String(), "# tsconnect: proxy "+proxy) {
		t.Errorf("stdout lacks the proxy address:\n%s", p.stdout)
	}
	env, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(envFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("env file mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(string(env), "export ALL_PROXY='socks5h://"+proxy+"'\n") || !strings.Contains(string(env), "export https_proxy='http://"+proxy+"'\n") {
		t.Errorf("env file:\n%s", env)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v, want mode 0600", fi.Mode(), err)
	}

	// The forwards, from stderr.
	fwds := map[string]string{}
	for _, m := range regexpAll(p.stderr.String(), `tsconnect: forward (127\.0\.0\.1:\d+) -> (web:\d+)`) {
		fwds[m[2]] = m[1]
	}
	if len(fwds) != 2 {
		t.Fatalf("forward lines: %v\n%s", fwds, p.stderr)
	}

	// Outbound only: the proxy and the forwards, on loopback, are the
	// process's only TCP listeners (the control socket is a Unix socket).
	t.Run("listeners", func(t *testing.T) {
		checkListeners(t, p.cmd.Process.Pid, proxy, fwds["web:80"], fwds["web:7"], metricsAddr)
	})

	t.Run("status --json", func(t *testing.T) {
		s := tsc(t, nil, "status", "--json", "--control-socket", sock)
		if s.code != 0 {
			t.Fatalf("exit %d\n%s", s.code, s.stderr)
		}
		var st struct {
			Name       string          `json:"name"`
			FQDN       string          `json:"fqdn"`
			IPv4       netip.Addr      `json:"ipv4"`
			IPv6       netip.Addr      `json:"ipv6"`
			Tags       []string        `json:"tags"`
			ControlURL string          `json:"control_url"`
			Proxy      string          `json:"proxy"`
			Allowlist  string          `json:"allowlist"`
			KeySource  string          `json:"key_source"`
			ProxyStats map[string]int  `json:"proxy_stats"`
			Forwards   []forwardStatus `json:"forwards"`
		}
		if err := json.Unmarshal([]byte(s.stdout.String()), &st); err != nil {
			t.Fatalf("%v\n%s", err, s.stdout)
		}
		if st.Name != "up-node" || st.FQDN != "up-node."+tailnettest.BaseDomain || !st.IPv4.IsValid() || !st.IPv6.IsValid() ||
			st.Proxy != proxy || st.Allowlist != "web."+tailnettest.BaseDomain || st.ControlURL != tn.ctl.URL ||
			len(st.Tags) != 1 || st.Tags[0] != "tag:sandbox" || !strings.Contains(st.KeySource, "TS_AUTHKEY") ||
			len(st.Forwards) != 2 || st.Forwards[0].Remote != "web:80" {
			t.Errorf("status:\n%s", s.stdout)
		}
		if _, ok := st.ProxyStats["accepted"]; !ok {
			t.Errorf("no proxy counters:\n%s", s.stdout)
		}
	})

	t.Run("forward http", func(t *testing.T) {
		before := tn.webHits.Load()
		c, err := net.Dial("tcp", fwds["web:80"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "GET /forwarded HTTP/1.0\r\nHost: web\r\n\r\n")
		got, err := io.ReadAll(c)
		if err != nil || !strings.HasSuffix(string(got), "hello from web /forwarded") {
			t.Errorf("through the forward: %v %q", err, got)
		}
		if tn.webHits.Load() == before {
			t.Error("the service saw no connection")
		}
	})

	t.Run("forward half-close", func(t *testing.T) {
		c, err := net.Dial("tcp", fwds["web:7"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "ping over a half-closed connection")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "ping over a half-closed connection" {
			t.Errorf("echo: %v %q", err, got)
		}
	})

	// A real scrape, on the metrics port and on the control socket, parsed
	// as Prometheus text: the two forwarded connections are counted.
	t.Run("metrics", func(t *testing.T) {
		for _, args := range [][]string{
			{"http://" + metricsAddr + "/metrics"},
			{"--unix-socket", sock, "http://tsconnect/metrics"},
		} {
			// A forward's connection is counted when both its halves
			// have closed, just after the client saw the end.
			var out string
			var m map[string]float64
			for deadline := time.Now().Add(5 * time.Second); ; {
				var code int
				if out, code = curlOut(t, args...); code != 0 {
					t.Fatalf("curl %v: exit %d\n%s", args, code, out)
				}
				m = parseProm(t, out)
				if m[`tsconnect_connections_total{protocol="forward",decision="allow"}`] >= 2 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got := m[`tsconnect_connections_total{protocol="forward",decision="allow"}`]; got != 2 {
				t.Errorf("curl %v: forward allow = %v, want 2\n%s", args, got, out)
			}
			if m["tsconnect_ready"] != 1 || m[`tsconnect_bytes_total{direction="up"}`] == 0 {
				t.Errorf("curl %v: ready %v, bytes up %v\n%s", args, m["tsconnect_ready"], m[`tsconnect_bytes_total{direction="up"}`], out)
			}
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			if out, code := curlOut(t, "-f", "http://"+metricsAddr+path); code != 0 || out != "ok\n" {
				t.Errorf("%s: exit %d %q", path, code, out)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		s := tsc(t, nil, "status", "--control-socket", sock)
		for _, w := range []string{"up-node (up-node." + tailnettest.BaseDomain + ")", "tag:sandbox", proxy, "web." + tailnettest.BaseDomain, "-> web:80: 1 accepted", "-> web:7: 1 accepted"} {
			if !strings.Contains(s.stdout.String(), w) {
				t.Errorf("status lacks %q:\n%s", w, s.stdout)
			}
		}
	})

	t.Run("second up", func(t *testing.T) {
		s := tsc(t, tn.env(), "up", "--listen", "127.0.0.1:0", "--control-socket", sock)
		if s.code != exitFailure || !strings.Contains(s.stderr.String(), "another tsconnect up is running at "+sock) || strings.Contains(s.stderr.String(), "joining") {
			t.Errorf("exit %d\n%s", s.code, s.stderr)
		}
	})

	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0\n%s", code, p.stderr)
	}
	tn.waitGone(t, "up-node", sent, "SIGTERM")
	for _, f := range []string{readyFile, envFile, sock} {
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Errorf("%s still there after exit: %v", f, err)
		}
	}
	if s := tsc(t, nil, "status", "--control-socket", sock); s.code != exitFailure || !strings.Contains(s.stderr.String(), "no tsconnect up is running") {
		t.Errorf("status after exit: %d\n%s", s.code, s.stderr)
	}
}

// TestUpSecondSignal: with the control plane gone, leaving the tailnet is
// slow (logging out waits for its bound); a second signal cuts it short.
func TestUpSecondSignal(t *testing.T) {
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{})
	p := startTsc(t, []string{"TS_AUTHKEY=" + ctl.CreateKey(t, "tag:sandbox"), "TS_CONTROL_URL=" + ctl.URL},
		"up", "--listen", "127.0.0.1:0", "--control-socket", filepath.Join(t.TempDir(), "s"))
	p.waitOutput(p.stderr, "(?m)^ready$", 60*time.Second)
	// Replace the control plane by one that accepts and never answers.
	addr := strings.TrimPrefix(ctl.URL, "https://")
	ctl.Close()
	hole, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitOutput(p.stderr, "leaving the tailnet", 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGINT)
	code := p.wait(10 * time.Second)
	t.Logf("exit %d %v after the second signal", code, time.Since(sent).Round(time.Millisecond))
	if code != 130 || !strings.Contains(p.stderr.String(), "interrupt again: exiting without waiting") {
		t.Errorf("exit %d, want 130\n%s", code, p.stderr)
	}
}

// TestUpSignalWhileJoining: a signal while the control plane is silent
// abandons the join at once.
func TestUpSignalWhileJoining(t *testing.T) {
	// A control plane that accepts connections and never answers: the
	// join hangs until the signal.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := startTsc(t, []string{"TS_AUTHKEY=hskey-auth-AAAAAAAAAAAA-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"},
		"up", "--control-url", "https://"+ln.Addr().String(), "--listen", "127.0.0.1:0", "--control-socket", filepath.Join(t.TempDir(), "s"))
	p.waitOutput(p.stderr, "joining tailnet via", 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(10 * time.Second); code != 130 {
		t.Errorf("exit %d, want 130\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "interrupt: giving up joining") {
		t.Errorf("stderr:\n%s", p.stderr)
	}
}

func regexpAll(s, re string) [][]string {
	return regexp.MustCompile(re).FindAllStringSubmatch(s, -1)
}

// curlOut runs the real curl and returns its stdout and exit status.
func curlOut(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10"}, args...)...).Output()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return string(out), 0
}

// parseProm parses the Prometheus text format: every line a comment
// (# TYPE, # HELP) or a sample "name{labels} value"; it fails the test on
// anything else.
func parseProm(t *testing.T, text string) map[string]float64 {
	t.Helper()
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})?) (-?[0-9.e+]+)$`)
	comment := regexp.MustCompile(`^# (TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge)|HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+)$`)
	m := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if comment.MatchString(line) {
			continue
		}
		sm := sample.FindStringSubmatch(line)
		if sm == nil {
			t.Fatalf("not Prometheus text: %q", line)
		}
		v, err := strconv.ParseFloat(sm[2], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		m[sm[1]] = v
	}
	return m
}
