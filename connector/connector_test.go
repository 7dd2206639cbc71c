package connector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
	"github.com/tsconnect/tsconnect/secrets"
)

// TestMain: the test binary is also the shim of IsolatedCommand
// (TestIsolatedCommand), as a program using it must be.
func TestMain(m *testing.M) {
	connector.IsolationShim()
	tailnettest.Main(m)
}

func staticKey(t testing.TB, k string) secrets.Source {
	t.Helper()
	key, err := secrets.NewKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return secrets.Static(key)
}

// start joins a connector with a fresh tag:sandbox key and closes it when
// the test ends.
func start(t testing.TB, ctl *tailnettest.Control, cfg connector.Config) *connector.Connector {
	t.Helper()
	if cfg.KeySource == nil {
		cfg.KeySource = staticKey(t, ctl.CreateKey(t, "tag:sandbox"))
	}
	if cfg.ControlURL == "" {
		cfg.ControlURL = ctl.URL
	}
	c, err := connector.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// webNode starts (once per control) a tag:web node serving HTTP on :80.
func webNode(t *testing.T, ctl *tailnettest.Control, name string) (*tailnettest.Node, *tailnettest.Counter) {
	n := ctl.StartNode(t, name, "tag:web")
	cnt := n.ServeHTTP(t, 80, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+name)
	}))
	return n, cnt
}

func waitSeen(t *testing.T, n *tailnettest.Node, c *connector.Connector) {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n.WaitPeer(t, st.IPv4)
}

func get(t *testing.T, c *connector.Connector, url string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: c.Dial}, Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestJoinFetchAndStatus(t *testing.T) {
	ctl := tailnettest.Shared(t)
	web, cnt := webNode(t, ctl, "web1")
	t0 := time.Now()
	c := start(t, ctl, connector.Config{HostnamePrefix: "agent"})
	t.Logf("connector ready in %v", time.Since(t0))
	waitSeen(t, web, c)

	for _, url := range []string{"http://web1/", "http://" + web.FQDN + "/", "http://" + web.FQDN + "./", "http://WEB1/", "http://" + web.IP4.String() + "/"} {
		if got := get(t, c, url); got != "hello from web1" {
			t.Errorf("GET %s = %q", url, got)
		}
	}
	if cnt.Load() == 0 {
		t.Error("web node saw no connection")
	}

	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Name, "agent-") || len(st.Name) != len("agent-")+36 {
		t.Errorf("name %q: want agent-<uuid>", st.Name)
	}
	if st.FQDN != st.Name+"."+tailnettest.BaseDomain || st.State != "Running" || !st.IPv4.IsValid() || !st.IPv6.IsValid() ||
		st.ControlURL != ctl.URL || st.Peers < 1 || !st.Ephemeral || len(st.Tags) != 1 || st.Tags[0] != "tag:sandbox" {
		t.Errorf("status %+v", st)
	}
	if strings.Contains(st.KeySource, "hskey") {
		t.Errorf("key source %q reveals the key", st.KeySource)
	}

	// The control plane's own view: tags and the ephemeral flag.
	n, ok, err := ctl.FindNode(st.Name)
	if err != nil || !ok {
		t.Fatalf("node %s not in headscale nodes list: %v", st.Name, err)
	}
	if n.PreAuthKey == nil || !n.PreAuthKey.Ephemeral || len(n.Tags) != 1 || n.Tags[0] != "tag:sandbox" {
		t.Errorf("headscale lists %+v", n)
	}
}

func TestCloseRemovesNodeAndFiles(t *testing.T) {
	ctl := tailnettest.Shared(t)
	// Everything the process might write lands in fresh directories.
	tmp, home := t.TempDir(), t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))

	c := start(t, ctl, connector.Config{})
	if entries, _ := os.ReadDir(tmp); len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "tsconnect-") {
		t.Fatalf("TMPDIR holds %v, want one tsconnect-* directory", entries)
	} else if fi, _ := os.Stat(filepath.Join(tmp, entries[0].Name())); fi.Mode().Perm() != 0o700 {
		t.Errorf("private dir mode %v, want 0700", fi.Mode().Perm())
	}
	name := c.Name()
	if _, ok, _ := ctl.FindNode(name); !ok {
		t.Fatalf("node %s not listed while running", name)
	}

	t0 := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	gone, err := ctl.WaitGone(name, t0, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node gone from headscale nodes list %v after Close", gone.Round(time.Millisecond))

	for _, d := range []string{tmp, home} {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if p != d {
				t.Errorf("left behind: %s", p)
			}
			return nil
		})
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed")
	}
}

func TestContextCancelTearsDown(t *testing.T) {
	ctl := tailnettest.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := connector.Start(ctx, connector.Config{ControlURL: ctl.URL, KeySource: staticKey(t, ctl.CreateKey(t, "tag:sandbox"))})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cancel()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not close the connector")
	}
	gone, err := ctl.WaitGone(c.Name(), t0, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node gone %v after cancel", gone.Round(time.Millisecond))
}

func TestRejectedKeysFailFast(t *testing.T) {
	ctl := tailnettest.Shared(t)
	expired, err := ctl.NewKey(tailnettest.KeyOptions{Tags: []string{"tag:sandbox"}, Expired: true})
	if err != nil {
		t.Fatal(err)
	}
	oneUse, err := ctl.NewKey(tailnettest.KeyOptions{Tags: []string{"tag:sandbox"}, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	first := start(t, ctl, connector.Config{KeySource: staticKey(t, oneUse)})
	first.Close()

	cases := []struct {
		name string
		key  string
		tags []string
		want string
	}{
		{"invalid", "hskey-auth-AAAAAAAAAAAA-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", nil, "auth key rejected"},
		{"expired", expired, nil, "auth key rejected"},
		{"used", oneUse, nil, "auth key rejected"},
		{"tag not permitted", ctl.CreateKey(t, "tag:sandbox"), []string{"tag:nobody-owns-this"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now()
			c, err := connector.Start(context.Background(), connector.Config{
				ControlURL: ctl.URL, KeySource: staticKey(t, tc.key), Tags: tc.tags, ReadyTimeout: 20 * time.Second,
			})
			took := time.Since(t0)
			if err == nil {
				c.Close()
				t.Fatal("Start succeeded")
			}
			t.Logf("failed in %v: %v", took.Round(time.Millisecond), err)
			var se *connector.StartError
			if !errors.As(err, &se) || se.Kind == connector.KindUnreachable || se.Hint == "" {
				t.Fatalf("error %v (%T): want a key/login StartError with a hint", err, err)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.key) {
				t.Error("error contains the key")
			}
			if took > 10*time.Second {
				t.Errorf("took %v, want < 10s", took)
			}
		})
	}
}

func TestUnreachableControlNamesURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = connector.Start(context.Background(), connector.Config{
		ControlURL: url, KeySource: staticKey(t, "hskey-auth-xxxx"), ReadyTimeout: 3 * time.Second,
	})
	var se *connector.StartError
	if !errors.As(err, &se) || se.Kind != connector.KindUnreachable || !strings.Contains(err.Error(), url) {
		t.Fatalf("got %v, want an unreachable StartError naming %s", err, url)
	}
	t.Log(err)
}

// TestHostDestinationsRefused: nothing outside the tailnet is dialed, and
// the host resolver is never asked.
func TestHostDestinationsRefused(t *testing.T) {
	ctl := tailnettest.Shared(t)
	c := start(t, ctl, connector.Config{DialTimeout: 3 * time.Second})

	// A listener on the namespace's own loopback: a host-only service.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			conn.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	for _, addr := range []string{
		"127.0.0.1:" + port, "[::ffff:127.0.0.1]:" + port, "[::1]:" + port, "0.0.0.0:" + port,
		"1.1.1.1:443", "[2606:4700:4700::1111]:443", "169.254.169.254:80", "10.0.0.1:80",
	} {
		_, err := c.Dial(context.Background(), "tcp", addr)
		var re *connector.RouteError
		if !errors.As(err, &re) || !errors.Is(err, connector.ErrNotRoutable) || !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Errorf("Dial %s: %v (%T), want a RouteError", addr, err, err)
		}
	}
	for _, addr := range []string{"localhost:" + port, "example.com:443", "web-unknown:80", "metadata.google.internal:80"} {
		_, err := c.Dial(context.Background(), "tcp", addr)
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("Dial %s: %v (%T), want not-found DNSError", addr, err, err)
		}
	}
	if _, err := c.Dial(context.Background(), "udp", "web1:53"); err == nil {
		t.Error("udp dial succeeded")
	}
	select {
	case <-accepted:
		t.Fatal("the host-only listener accepted a connection")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestACLFences: a port the ACL denies times out within the dial timeout;
// an allowed port with no listener is refused at once.
func TestACLFences(t *testing.T) {
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{Policy: `{
  "tagOwners": {"tag:sandbox": ["ops@"], "tag:web": ["ops@"]},
  "acls": [{"action": "accept", "src": ["tag:sandbox"], "dst": ["tag:web:80,81"]}]
}`})
	web, _ := webNode(t, ctl, "fenced")
	denied := web.ServeTCP(t, 8080, nil)
	c := start(t, ctl, connector.Config{DialTimeout: 2 * time.Second})
	waitSeen(t, web, c)
	if got := get(t, c, "http://fenced/"); got != "hello from fenced" {
		t.Fatalf("allowed port: %q", got)
	}

	t0 := time.Now()
	_, err := c.Dial(context.Background(), "tcp", "fenced:8080")
	took := time.Since(t0)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ACL-denied port: %v, want a timeout", err)
	}
	if took > 4*time.Second {
		t.Errorf("ACL-denied dial took %v with a 2s dial timeout", took)
	}
	if denied.Load() != 0 {
		t.Error("the ACL-denied listener accepted a connection")
	}

	_, err = c.Dial(context.Background(), "tcp", "fenced:81")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("allowed port without listener: %v, want ECONNREFUSED", err)
	}
	t.Logf("denied port failed after %v; refused: %v", took.Round(time.Millisecond), err)
}

func TestStartCloseLeaksNoGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("20 joins")
	}
	ctl := tailnettest.Shared(t)
	key := staticKey(t, ctl.CreateKey(t, "tag:sandbox"))
	cycle := func() {
		c, err := connector.Start(context.Background(), connector.Config{ControlURL: ctl.URL, KeySource: key})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // warm up process-wide singletons
	before := runtime.NumGoroutine()
	t0 := time.Now()
	for range 20 {
		cycle()
	}
	t.Logf("20 start/close cycles in %v", time.Since(t0).Round(time.Millisecond))
	var after int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if after = runtime.NumGoroutine(); after <= before+2 {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("goroutines %d before, %d after 20 cycles:\n%s", before, after, buf[:runtime.Stack(buf, true)])
}

// TestCancelDuringJoinLeavesNoNode: a signal that arrives after the
// control plane registered the node, but before Start returned, must still
// remove the node.
func TestCancelDuringJoinLeavesNoNode(t *testing.T) {
	ctl := tailnettest.Shared(t)
	key := staticKey(t, ctl.CreateKey(t, "tag:sandbox"))
	for i := range 5 {
		name := fmt.Sprintf("cancel-join-%d", i)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			c, err := connector.Start(ctx, connector.Config{ControlURL: ctl.URL, KeySource: key, Hostname: name})
			if err == nil {
				<-c.Done()
			}
			done <- err
		}()
		for {
			if _, ok, _ := ctl.FindNode(name); ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		t0 := time.Now()
		cancel()
		err := <-done
		gone, werr := ctl.WaitGone(name, t0, 2*time.Second)
		if werr != nil {
			t.Fatalf("cycle %d (Start returned %v): %v", i, err, werr)
		}
		t.Logf("cycle %d: Start returned %v; node gone in %v", i, err, gone.Round(time.Millisecond))
	}
}

// TestKeySourceFailure: a key source that fails is its own kind of
// failure, not a key the control plane rejected, and its message does not
// claim the control plane was contacted.
func TestKeySourceFailure(t *testing.T) {
	t.Setenv("TS_AUTHKEY", "")
	t.Setenv("TS_AUTH_KEY", "")
	_, err := connector.Start(context.Background(), connector.Config{ControlURL: "http://127.0.0.1:1"})
	var se *connector.StartError
	if !errors.As(err, &se) || se.Kind != connector.KindKeySource {
		t.Fatalf("Start without a key: %v, want a StartError of KindKeySource", err)
	}
	if msg := err.Error(); strings.Contains(msg, "rejected") || strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "TS_AUTHKEY") {
		t.Errorf("message %q: want the source named, no control URL, no \"rejected\"", msg)
	}
	if !errors.Is(err, secrets.ErrEmptyKey) {
		t.Errorf("%v does not wrap secrets.ErrEmptyKey", err)
	}
}
