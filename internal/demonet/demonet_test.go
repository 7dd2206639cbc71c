package demonet

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tailscale.com/net/netmon"
	"tailscale.com/net/portmapper"
	"tailscale.com/util/eventbus"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestLoopbackOnly runs the demo's story in a child process that
// tailscale does not know is a test, in the laptop-like namespace, and
// checks that no packet went anywhere but loopback: nothing out through
// decoy0 (the gateway, the internet, DNS servers), nothing to or from the
// machine's own address 192.0.2.10, no DNS at all. The child's environment
// also names proxies on TEST-NET addresses, which must not be used.
func TestLoopbackOnly(t *testing.T) {
	res, st, offenders, decoyDelta := runChild(t, childOpts{scenario: "guarded", proxies: true})
	logResult(t, res, &st)
	checkStory(t, res)
	if res.InTest {
		t.Errorf("tailscale believed it ran in a test; the child must run it as the demo command would")
	}
	if decoyDelta != 0 {
		t.Errorf("decoy0 transmitted %d packets, want 0: %q", decoyDelta, lastDecoyFrames(decoyDelta))
	}
	if len(offenders) > 0 {
		t.Errorf("%d packets broke the loopback rule:\n%s", st.Offending, strings.Join(offenders, "\n"))
	}
	if res.Dropped != 0 {
		t.Errorf("the control plane dropped %d non-loopback endpoints; with the knobs on, nodes should report none", res.Dropped)
	}
	if len(res.Leaked) > 0 {
		t.Errorf("%d goroutines left after Close:\n%s", len(res.Leaked), strings.Join(res.Leaked, "\n\n"))
	}
}

// TestLeakDetector is the control experiment for TestLoopbackOnly: without
// the knobs and the control plane's endpoint filter, the same story must
// produce packets the capture flags. If it does not, TestLoopbackOnly
// proves nothing.
func TestLeakDetector(t *testing.T) {
	if testing.Short() {
		t.Skip("control experiment; skipped in -short mode")
	}
	res, st, offenders, decoyDelta := runChild(t, childOpts{scenario: "noguards"})
	logResult(t, res, &st)
	t.Logf("without guards: decoy0 sent %d packets; %d offending packets:\n%s", decoyDelta, st.Offending, strings.Join(offenders, "\n"))
	if st.Offending == 0 && decoyDelta == 0 {
		t.Errorf("no offending packet seen without the guards: the capture cannot detect leaks")
	}
}

// TestOffline runs the demo on a machine with no network at all (a laptop
// in airplane mode): a namespace with only lo.
func TestOffline(t *testing.T) {
	res, _, _, _ := runChild(t, childOpts{scenario: "guarded", offline: true})
	logResult(t, res, nil)
	checkStory(t, res)
}

// TestPortmapperOff checks that the knobs reach tailscale's port mapper,
// which the nodes create: given a gateway, it must refuse to probe it.
// (decoy0's TEST-NET gateway is not a private address, so the nodes'
// port mappers never find a gateway to probe in the other tests.)
func TestPortmapperOff(t *testing.T) {
	ApplyKnobs()
	c, err := startCapture()
	if err != nil {
		t.Fatal(err)
	}
	before := decoyTx()
	bus := eventbus.New()
	defer bus.Close()
	pm := portmapper.NewClient(portmapper.Config{EventBus: bus, NetMon: netmon.NewStatic(), Logf: logfFor(t)})
	defer pm.Close()
	pm.SetGatewayLookupFunc(func() (gw, myIP netip.Addr, ok bool) { return decoyGW4, decoyAddr4, true })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pm.Probe(ctx); !errors.Is(err, portmapper.ErrPortMappingDisabled) {
		t.Errorf("Probe: %v, want ErrPortMappingDisabled", err)
	}
	st, offenders := c.stop()
	if d := decoyTx() - before; d != 0 || st.Offending != 0 {
		t.Errorf("decoy0 sent %d packets; offenders: %q", d, offenders)
	}
}

// TestInProcess runs the story inside the test process (where tailscale
// knows it is in a test) under the same capture, checking the API and that
// Close leaves no goroutine behind.
func TestInProcess(t *testing.T) {
	c, err := startCapture()
	if err != nil {
		t.Fatal(err)
	}
	before := decoyTx()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res := runScenario(ctx, logfFor(t))
	st, offenders := c.stop()
	logResult(t, res, &st)
	checkStory(t, res)
	if d := decoyTx() - before; d != 0 {
		t.Errorf("decoy0 transmitted %d packets, want 0: %q", d, lastDecoyFrames(d))
	}
	if len(offenders) > 0 {
		t.Errorf("%d packets broke the loopback rule:\n%s", st.Offending, strings.Join(offenders, "\n"))
	}
	if len(res.Leaked) > 0 {
		t.Errorf("%d goroutines left after Close:\n%s", len(res.Leaked), strings.Join(res.Leaked, "\n\n"))
	}
}

// TestControlPage checks that the control URL, opened in a browser, shows
// the label instead of crashing the process (testcontrol panics on
// requests it does not know).
func TestControlPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, Options{Logf: logfFor(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for path, want := range map[string]int{"/": 200, "/machine/x": 404, "/favicon.ico": 404} {
		resp, err := http.Get(n.ControlURL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
		if path == "/" && (!strings.Contains(string(body), ControlLabel) || !strings.Contains(string(body), "secret-db, web")) {
			t.Errorf("GET /: %q, want the label and the nodes", body)
		}
	}
	if got, want := n.Nodes(), []string{"secret-db", "web"}; !slices.Equal(got, want) {
		t.Errorf("Nodes() = %q, want %q", got, want)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

type childOpts struct {
	scenario string // "guarded", or "noguards" for the control experiment
	proxies  bool   // put proxy settings in the child's environment
	offline  bool   // run the child in a network namespace of its own, with only lo
}

// TestStartCancelled checks that a Start cut short by its context cleans
// up after itself.
func TestStartCancelled(t *testing.T) {
	baseline := runtime.NumGoroutine()
	// Cancelled from within: at the first log line of a service node,
	// which comes while Start is still waiting for that node (a timer
	// would fire before or after Start, depending on the machine's speed).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logf := logfFor(t)
	n, err := Start(ctx, Options{Logf: func(f string, a ...any) {
		if strings.HasPrefix(f, "demo node ") {
			cancel()
		}
		logf(f, a...)
	}})
	if err == nil {
		n.Close()
		t.Fatal("Start succeeded after its context was cancelled while a node was starting")
	}
	t.Logf("Start: %v", err)
	if left := leakedGoroutines(baseline); len(left) > 0 {
		t.Errorf("%d goroutines left after a failed Start:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// runChild runs a scenario in a child process under capture and returns
// its result, the capture's statistics and offenders, and how many packets
// decoy0 transmitted meanwhile.
func runChild(t *testing.T, o childOpts) (scenarioResult, captureStats, []string, int64) {
	t.Helper()
	if decoyTx() < 0 {
		t.Fatal("cannot read decoy0's counters from /proc/net/dev")
	}
	resultFile := filepath.Join(t.TempDir(), "result.json")
	c, err := startCapture()
	if err != nil {
		t.Fatal(err)
	}
	before := decoyTx()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = os.Args[0]
	// Start sets knobs in this process's environment too; the child must
	// not inherit them, or it would not test that Start sets them.
	cmd.Env = cleanEnv()
	cmd.Env = append(cmd.Env, envScenario+"="+o.scenario, envResult+"="+resultFile)
	if o.offline {
		cmd.Env = append(cmd.Env, envOffline+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	}
	if o.proxies {
		// Proxies a laptop might have configured, on TEST-NET
		// addresses: nothing may go through them.
		cmd.Env = append(cmd.Env,
			"HTTP_PROXY=http://192.0.2.1:3128",
			"HTTPS_PROXY=http://192.0.2.1:3128",
			"ALL_PROXY=socks5://192.0.2.1:1080",
			"NO_PROXY=",
		)
	}
	out, err := cmd.CombinedOutput()
	st, offenders := c.stop()
	decoyDelta := decoyTx() - before
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if len(out) > 0 {
		t.Logf("child output:\n%s", out)
	}
	var res scenarioResult
	b, err := os.ReadFile(resultFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res, st, offenders, decoyDelta
}

// checkStory checks what the scenario saw.
func checkStory(t *testing.T, res scenarioResult) {
	t.Helper()
	if res.Err != "" {
		t.Fatalf("scenario: %s", res.Err)
	}
	if want := "hello from web via the tailnet\n"; res.Body != want {
		t.Errorf("http://web/ said %q, want %q", res.Body, want)
	}
	if !strings.HasPrefix(res.Banner, "secret-db:") {
		t.Errorf("secret-db:5432 said %q", res.Banner)
	}
	want := []string{res.Connector, "secret-db", "web"}
	slices.Sort(want)
	if !slices.Equal(res.NodesBefore, want) {
		t.Errorf("Nodes() while the connector ran = %q, want %q", res.NodesBefore, want)
	}
	if want := []string{"secret-db", "web"}; !slices.Equal(res.NodesAfter, want) {
		t.Errorf("Nodes() after the connector closed = %q, want %q", res.NodesAfter, want)
	}
	if res.WebAccepted != 1 || res.DBAccepted != 1 {
		t.Errorf("accepted: web %d, secret-db %d; want 1 each", res.WebAccepted, res.DBAccepted)
	}
}

// logResult logs the scenario's timings and, if st is not nil, the
// capture's statistics.
func logResult(t *testing.T, res scenarioResult, st *captureStats) {
	t.Helper()
	t.Logf("timings (ms): Start %.0f, connector join %.0f, first fetch %.0f, gone from Nodes after Close %.0f, Net.Close %.0f",
		res.StartMS, res.JoinMS, res.FetchMS, res.GoneMS, res.CloseMS)
	t.Logf("after the connector closed: Nodes() = %q; web still lists %d peers", res.NodesAfter, res.WebPeers)
	if st == nil {
		return
	}
	t.Logf("packets: lo %d, decoy0 %d (IPv4 %d, IPv6 %d; UDP %d, TCP %d); capture drops %d; endpoints dropped by control %d",
		st.Lo, st.Decoy, st.IPv4, st.IPv6, st.UDP, st.TCP, st.Drops, res.Dropped)
}

func lastDecoyFrames(n int64) []string {
	f := decoyFrames()
	if int64(len(f)) > n {
		f = f[int64(len(f))-n:]
	}
	return f
}

func logfFor(t *testing.T) func(string, ...any) {
	if os.Getenv("DEMONET_TEST_LOG") != "" {
		return t.Logf
	}
	return func(string, ...any) {}
}

// TestDemoCommand runs the real `tsconnect demo` binary, once with its
// walkthrough and once with curl as the command, in the laptop-like
// namespace under capture, with proxies on TEST-NET addresses in its
// environment and none of tailscale's knobs: not one packet may go
// anywhere but loopback.
func TestDemoCommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tsconnect")
	if err := tailnettest.GoBuild(bin, "../../cmd/tsconnect", "CGO_ENABLED=0"); err != nil {
		t.Fatal(err)
	}
	env := append(cleanEnv(),
		"HTTP_PROXY=http://192.0.2.1:3128",
		"HTTPS_PROXY=http://192.0.2.1:3128",
		"ALL_PROXY=socks5://192.0.2.1:1080",
		"NO_PROXY=",
	)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"walkthrough", []string{"demo"}, "6. leave  "},
		{"curl", []string{"demo", "--", "curl", "-sS", "http://web/"}, "hello from web via the tailnet\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := startCapture()
			if err != nil {
				t.Fatal(err)
			}
			before := decoyTx()
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = env
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			st, offenders := c.stop()
			delta := decoyTx() - before
			if err != nil {
				t.Fatalf("tsconnect %q: %v\nstdout:\n%s\nstderr:\n%s", tc.args, err, out, stderr.String())
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("stdout lacks %q:\n%s", tc.want, out)
			}
			t.Logf("packets: lo %d, decoy0 %d (IPv4 %d, IPv6 %d; UDP %d, TCP %d); capture drops %d",
				st.Lo, st.Decoy, st.IPv4, st.IPv6, st.UDP, st.TCP, st.Drops)
			if st.Lo == 0 {
				t.Errorf("the capture saw no packet on lo: it is not watching")
			}
			if delta != 0 {
				t.Errorf("decoy0 transmitted %d packets, want 0: %q", delta, lastDecoyFrames(delta))
			}
			if len(offenders) > 0 {
				t.Errorf("%d packets broke the loopback rule:\n%s", st.Offending, strings.Join(offenders, "\n"))
			}
		})
	}
}
