package demonet

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"tailscale.com/util/testenv"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/secrets"
)

// scenarioResult is what one run of the demo's story measured.
type scenarioResult struct {
	InTest bool // whether tailscale believed it ran in a test

	StartMS float64 // demonet.Start
	JoinMS  float64 // connector.Start
	FetchMS float64 // GET http://web/ through the connector
	GoneMS  float64 // from connector.Close until Nodes no longer lists it
	CloseMS float64 // Net.Close

	Connector   string
	Body        string
	Banner      string // what secret-db:5432 said
	NodesBefore []string
	NodesAfter  []string
	WebPeers    int // peers web still lists after the connector left (testcontrol never deletes nodes)
	WebAccepted int64
	DBAccepted  int64
	Dropped     int      // non-loopback endpoints the control plane removed
	Leaked      []string // goroutines left after Close
	Err         string
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runScenario does what `tsconnect demo` does: start the demo tailnet, join
// it with a connector, fetch http://web/, close the connector and check it
// left, close the tailnet.
func runScenario(ctx context.Context, logf func(string, ...any)) (res scenarioResult) {
	fail := func(format string, args ...any) scenarioResult {
		res.Err = fmt.Sprintf(format, args...)
		return res
	}
	res.InTest = testenv.InTest()
	baseline := runtime.NumGoroutine()

	t0 := time.Now()
	n, err := Start(ctx, Options{Logf: logf})
	res.StartMS = ms(time.Since(t0))
	if err != nil {
		return fail("Start: %v", err)
	}
	defer n.Close()
	if n.Web.FQDN != "web."+Domain || !n.Web.IP4.IsValid() {
		return fail("unexpected web service: %+v", n.Web)
	}

	k, err := secrets.NewKey(n.AuthKey())
	if err != nil {
		return fail("NewKey: %v", err)
	}
	t0 = time.Now()
	c, err := connector.Start(ctx, connector.Config{ControlURL: n.ControlURL, KeySource: secrets.Static(k), Logf: logf})
	res.JoinMS = ms(time.Since(t0))
	if err != nil {
		return fail("connector.Start: %v", err)
	}
	defer c.Close()
	res.Connector = c.Name()
	res.NodesBefore = n.Nodes()

	tr := &http.Transport{DialContext: c.Dial, DisableKeepAlives: true}
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t0 = time.Now()
	resp, err := hc.Get("http://web/")
	if err != nil {
		return fail("GET http://web/: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.FetchMS = ms(time.Since(t0))
	res.Body = string(body)

	conn, err := c.Dial(ctx, "tcp", "secret-db:5432")
	if err != nil {
		return fail("dial secret-db:5432: %v", err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	res.Banner, _ = bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	tr.CloseIdleConnections()

	t0 = time.Now()
	if err := c.Close(); err != nil {
		return fail("connector Close: %v", err)
	}
	for time.Since(t0) < 10*time.Second && slices.Contains(n.Nodes(), res.Connector) {
		time.Sleep(10 * time.Millisecond)
	}
	res.GoneMS = ms(time.Since(t0))
	res.NodesAfter = n.Nodes()
	if lc, err := n.nodes[0].srv.LocalClient(); err == nil {
		if st, err := lc.Status(ctx); err == nil {
			res.WebPeers = len(st.Peer)
		}
	}
	res.WebAccepted, res.DBAccepted = n.Web.Accepted(), n.Other.Accepted()
	res.Dropped = n.droppedEndpoints()

	t0 = time.Now()
	if err := n.Close(); err != nil {
		return fail("Close: %v", err)
	}
	res.CloseMS = ms(time.Since(t0))
	if err := n.Close(); err != net.ErrClosed {
		return fail("second Close = %v, want net.ErrClosed", err)
	}
	res.Leaked = leakedGoroutines(baseline)
	return res
}

// leakedGoroutines waits up to 5 s for the goroutine count to fall back to
// baseline and returns the stacks of what is left.
func leakedGoroutines(baseline int) []string {
	for range 500 {
		if runtime.NumGoroutine() <= baseline {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "leakedGoroutines") || strings.Contains(g, "scenarioChild") {
			continue
		}
		left = append(left, g)
	}
	return left
}

// scenarioChild is the whole program of a child process started by
// runChild: it runs the scenario as the demo command would and writes the
// result as JSON to $DEMONET_TEST_RESULT.
//
// tailscale behaves differently inside tests (testenv.InTest: no log
// upload, no pause when offline, …), which would hide the very leaks the
// tests look for. It decides by looking up the "test.v" flag, so the child
// swaps in an empty flag set before anything asks.
func scenarioChild() int {
	if os.Getenv(envNetns) == "" {
		fmt.Fprintln(os.Stderr, "demonet test: refusing to run a scenario outside the private namespace")
		return 2
	}
	if os.Getenv(envOffline) != "" {
		if err := offlineNetwork(); err != nil {
			fmt.Fprintln(os.Stderr, "demonet test:", err)
			return 2
		}
	} else if _, err := net.InterfaceByName(decoyName); err != nil {
		fmt.Fprintln(os.Stderr, "demonet test: refusing to run a scenario without the decoy interface:", err)
		return 2
	}
	flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
	if os.Getenv(envScenario) == "noguards" {
		testHookNoGuards = true
	}
	logf := func(string, ...any) {}
	if os.Getenv("DEMONET_TEST_LOG") != "" {
		logf = log.Printf
	} else {
		log.SetOutput(io.Discard)
	}
	timeout := 90 * time.Second
	if testHookNoGuards {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res := runScenario(ctx, logf)
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(os.Getenv(envResult), b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
