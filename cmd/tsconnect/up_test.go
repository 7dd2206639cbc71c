package main

import (
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
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
		"--forward", "127.0.0.1:0=web:80", "--forward", "127.0.0.1:0=web:7")
	p.waitOutput(p.stderr, "(?m)^ready$", 60*time.Second)

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
		checkListeners(t, p.cmd.Process.Pid, proxy, fwds["web:80"], fwds["web:7"])
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
