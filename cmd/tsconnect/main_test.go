package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestMain runs every test inside tailnettest's loopback-only network
// namespace: the CLI tests start real tailnet nodes.
func TestMain(m *testing.M) { tailnettest.Main(m) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// tsconnectBin builds the real binary once per test process, so exit
// codes, signals and child processes are real. It goes next to the test
// binary, in the directory `go test` removes afterwards.
func tsconnectBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(filepath.Dir(exe), "tsconnect-cli")
		t0 := time.Now()
		if buildErr = tailnettest.GoBuild(binPath, ".", "CGO_ENABLED=0"); buildErr != nil {
			return
		}
		t.Logf("built %s in %v", binPath, time.Since(t0).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cleanEnv is the test process's environment without anything tsconnect
// would read as a key, a control URL, a Vault setting or a flag.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "TS_AUTHKEY", name == "TS_AUTH_KEY", name == "TS_CONTROL_URL",
			name == "TAILSCALE_LOGIN_SERVER", name == "XDG_RUNTIME_DIR",
			strings.HasPrefix(name, "VAULT_"),
			strings.HasPrefix(name, "TSCONNECT_") && !strings.HasPrefix(name, "TSCONNECT_TEST") && name != "TSCONNECT_HEADSCALE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running tsconnect.
type proc struct {
	t              testing.TB
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	code           int
	start          time.Time
	dur            time.Duration
}

// startTsc starts the binary with a clean environment plus env.
func startTsc(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	return startTscEnv(t, cleanEnv(env...), args...)
}

// startTscEnv starts the binary with exactly the environment env.
func startTscEnv(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(tsconnectBin(t), args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		p.cmd.Wait()
		p.dur = time.Since(p.start)
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(interface{ Signaled() bool }); ok && ws.Signaled() {
			p.code = -1
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
			t.Logf("killed tsconnect %v\nstdout:\n%s\nstderr:\n%s", args, p.stdout, p.stderr)
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("tsconnect still running after %v\nstdout:\n%s\nstderr:\n%s", timeout, p.stdout, p.stderr)
		return 0
	}
}

// waitOutput waits until re matches stdout (or stderr) and returns the
// submatches.
func (p *proc) waitOutput(buf *syncBuffer, re string, timeout time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindStringSubmatch(buf.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := rx.FindStringSubmatch(buf.String()); m != nil {
				return m
			}
			p.t.Fatalf("tsconnect exited (%d) before printing %q\nstdout:\n%s\nstderr:\n%s", p.code, re, p.stdout, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q after %v\nstdout:\n%s\nstderr:\n%s", re, timeout, p.stdout, p.stderr)
		}
	}
}

// readyRe matches the progress line once the node is up.
const readyRe = `tsconnect: ready in \S+ as (\S+) (\S+)`

// waitReady waits for the ready line and returns the node's name and
// tailnet IPv4 address.
func (p *proc) waitReady() (string, netip.Addr) {
	p.t.Helper()
	m := p.waitOutput(p.stderr, readyRe, 60*time.Second)
	ip, err := netip.ParseAddr(m[2])
	if err != nil {
		p.t.Fatalf("ready line: %v", err)
	}
	return m[1], ip
}

// tsc runs the binary to completion.
func tsc(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := startTsc(t, env, args...)
	p.wait(90 * time.Second)
	return p
}

// runInProcess calls run as main would, with buffers for the streams.
func runInProcess(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb syncBuffer
	code = run(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// tailnet is a test tailnet: the shared Headscale, a key for tsconnect,
// and a service node "web" serving HTTP on :80, HTTPS on :443 and echo on
// :7, whose connection counters tell whether anything reached it.
type tailnet struct {
	ctl     *tailnettest.Control
	key     string
	web     *tailnettest.Node
	webHits *tailnettest.Counter
	echo    *tailnettest.Counter
}

func newTailnet(t *testing.T, webName string) *tailnet {
	t.Helper()
	ctl := tailnettest.Shared(t)
	tn := &tailnet{ctl: ctl, key: ctl.CreateKey(t, "tag:sandbox")}
	if webName != "" {
		tn.web = ctl.StartNode(t, webName, "tag:web")
		tn.webHits = tn.web.ServeHTTP(t, 80, helloHandler(webName))
		tn.echo = tn.web.ServeTCP(t, 7, nil)
	}
	return tn
}

// env is what tsconnect needs to join this tailnet.
func (tn *tailnet) env(extra ...string) []string {
	return append([]string{"TS_AUTHKEY=" + tn.key, "TS_CONTROL_URL=" + tn.ctl.URL}, extra...)
}

// waitGone checks that the node left the machine list within 2 s of since.
func (tn *tailnet) waitGone(t *testing.T, name string, since time.Time, what string) {
	t.Helper()
	d, err := tn.ctl.WaitGone(name, since, 2*time.Second)
	if err != nil {
		t.Errorf("node %s: %v", name, err)
		return
	}
	t.Logf("node %s gone from the machine list %v after %s", name, d.Round(time.Millisecond), what)
}

func helloHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+name+" "+r.URL.Path)
	})
}
