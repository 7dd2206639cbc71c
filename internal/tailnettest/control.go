package tailnettest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BaseDomain is the MagicDNS base domain of the test tailnet: node "web"
// is "web.tailnet.test".
const BaseDomain = "tailnet.test"

// DefaultPolicy lets every tagged node reach every other on any port.
// Tests that need ACL fences pass their own.
const DefaultPolicy = `{
  "tagOwners": {
    "tag:sandbox": ["ops@"], "tag:web": ["ops@"], "tag:db": ["ops@"],
    "tag:other": ["ops@"], "tag:router": ["ops@"]
  },
  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]
}`

// ControlOptions configure [StartControl]. The zero value is fine.
type ControlOptions struct {
	// Policy is the ACL policy (HuJSON). Empty means DefaultPolicy.
	Policy string
	// SplitDNS maps a domain to nameservers, for split-DNS tests.
	SplitDNS map[string][]string
	// ExtraRecords are MagicDNS extra records: name -> IPv4 address.
	ExtraRecords map[string]string
	// SlowJoin keeps Headscale's default batching delays (joins take about
	// 2 s each) instead of the fast test tuning.
	SlowJoin bool
	// DERPDown turns the embedded DERP and STUN server off and hands nodes
	// a DERP map whose only region is 127.0.0.1 port 9 (TCP for DERP, UDP
	// for STUN), where nothing listens: DERP is unavailable from the start,
	// and nodes can reach each other only on the direct path (loopback
	// UDP). Joins take a few seconds longer: netcheck waits for STUN
	// answers that never come.
	DERPDown bool
}

// DERPDownPort is the port the DERP map of a DERPDown control names for
// both DERP (TCP) and STUN (UDP). It is below the ephemeral port range, so
// no test listener is ever given it, and nothing in the namespace listens
// on it.
const DERPDownPort = 9

// live are the controls started and not yet closed; Main closes them when
// the tests end, so none outlives the test binary.
var (
	liveMu sync.Mutex
	live   []*Control
)

func closeAll() {
	liveMu.Lock()
	cs, fns := live, atExit
	live, atExit = nil, nil
	liveMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	for _, c := range cs {
		c.Close()
	}
}

var atExit []func()

// AtExit registers f to run when the tests end, before the controls stop:
// cleanup for state shared by all tests of a binary.
func AtExit(f func()) {
	liveMu.Lock()
	defer liveMu.Unlock()
	atExit = append(atExit, f)
}

// Shared returns one Control per test binary, started on first use with
// DefaultPolicy and closed by Main.
func Shared(tb testing.TB) *Control {
	tb.Helper()
	sharedOnce.Do(func() { shared, sharedErr = NewControl(ControlOptions{}) })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return shared
}

var (
	sharedOnce sync.Once
	shared     *Control
	sharedErr  error
)

// Control is a running Headscale server on 127.0.0.1.
type Control struct {
	URL  string // https://127.0.0.1:port
	Dir  string // config, database, keys and socket
	bin  string
	logs *bytes.Buffer

	mu     sync.Mutex
	closed bool
	cmd    *exec.Cmd     // the current headscale process; nil before the first start
	waitCh chan struct{} // closed when cmd has exited
}

// StartControl starts Headscale and waits until it answers /health. It
// is stopped when tb ends. It must run inside the namespace set up by [Main].
func StartControl(tb testing.TB, opts ControlOptions) *Control {
	tb.Helper()
	c, err := NewControl(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// NewControl is StartControl without a testing.TB (for the demo and
// benchmarks). The caller must Close it.
func NewControl(opts ControlOptions) (*Control, error) {
	if !InNamespace() {
		return nil, fmt.Errorf("tailnettest: refusing to start a tailnet outside the loopback-only namespace; call tailnettest.Main from TestMain")
	}
	bin, err := HeadscaleBinary()
	if err != nil {
		return nil, err
	}
	cert, key := os.Getenv(envTLSCert), os.Getenv(envTLSKey)
	dir, err := os.MkdirTemp("", "hs")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	stun, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	c := &Control{
		URL:  fmt.Sprintf("https://127.0.0.1:%d", ports[0]),
		Dir:  dir,
		bin:  bin,
		logs: new(bytes.Buffer),
	}
	policy := opts.Policy
	if policy == "" {
		policy = DefaultPolicy
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.hujson"), []byte(policy), 0o600); err != nil {
		return nil, err
	}
	derp := extraDERPRegions(ports[0], stun)
	if opts.DERPDown {
		derp = deadDERPRegion()
	}
	if err := os.WriteFile(filepath.Join(dir, "derp.yaml"), []byte(derp), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.config(), []byte(c.configYAML(ports, stun, cert, key, opts)), 0o600); err != nil {
		return nil, err
	}
	if err := c.startProcess(); err != nil {
		return nil, err
	}
	liveMu.Lock()
	live = append(live, c)
	liveMu.Unlock()
	if err := c.waitHealthy(30 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Run("users", "create", "ops"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Control) config() string { return filepath.Join(c.Dir, "config.yaml") }

// startProcess starts `headscale serve` on the control's config.
func (c *Control) startProcess() error {
	cmd := exec.Command(c.bin, "serve", "-c", c.config())
	cmd.Stdout, cmd.Stderr = lockedWriter{&c.mu, c.logs}, lockedWriter{&c.mu, c.logs}
	// A test binary that dies without running Main's cleanup (a -timeout
	// panic, a crash) must not leave Headscale running. The death signal
	// fires when the OS thread that started the child exits, so that
	// thread is locked to a goroutine that lives as long as the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	waitCh := make(chan struct{})
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(waitCh)
	}()
	if err := <-started; err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed { // Close ran meanwhile: it did not see this process
		c.mu.Unlock()
		cmd.Process.Kill()
		<-waitCh
		return fmt.Errorf("tailnettest: control %s is closed", c.URL)
	}
	c.cmd, c.waitCh = cmd, waitCh
	c.mu.Unlock()
	return nil
}

// process returns the current headscale process and its exit channel.
func (c *Control) process() (*exec.Cmd, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd, c.waitCh
}

// Stop kills Headscale (SIGKILL: a crash, not a graceful shutdown) and
// waits for it to exit, keeping its directory: the configuration,
// database, noise and DERP keys. While it is stopped, the control plane
// and its embedded DERP and STUN server are unreachable, and Run, Nodes
// and the like fail. Restart brings it back. Stopping a stopped control is
// a no-op. Never stop the Shared control: other tests use it.
func (c *Control) Stop() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("tailnettest: control %s is closed", c.URL)
	}
	cmd, waitCh := c.cmd, c.waitCh
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-waitCh:
		return nil
	default:
	}
	cmd.Process.Kill()
	<-waitCh
	return nil
}

// Restart stops Headscale if it runs, then starts it again on the same
// ports with the same configuration and database, and waits until it
// answers. Nodes that were registered reconnect with their existing keys.
func (c *Control) Restart() error {
	if err := c.Stop(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("tailnettest: control %s is closed", c.URL)
	}
	c.mu.Unlock()
	// A killed server leaves its socket behind; waitHealthy must not take
	// the stale one for the new server's.
	os.Remove(filepath.Join(c.Dir, "hs.sock"))
	if err := c.startProcess(); err != nil {
		return fmt.Errorf("tailnettest: restarting headscale: %w", err)
	}
	// The old process's listening sockets are gone with it; the new one
	// binds the same ports (Go listeners set SO_REUSEADDR, so connections
	// left in TIME_WAIT do not stand in the way).
	return c.waitHealthy(30 * time.Second)
}

func (c *Control) configYAML(ports []int, stun int, cert, key string, opts ControlOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `server_url: %s
listen_addr: 127.0.0.1:%d
metrics_listen_addr: 127.0.0.1:%d
grpc_listen_addr: 127.0.0.1:%d
grpc_allow_insecure: false
tls_cert_path: %s
tls_key_path: %s
noise:
  private_key_path: %s/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: %t
    region_id: 999
    region_code: test
    region_name: test-loopback
    verify_clients: true
    stun_listen_addr: 127.0.0.1:%d
    private_key_path: %s/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: 127.0.0.1
  urls: []
  paths: [%s/derp.yaml]
  auto_update_enabled: false
disable_check_updates: true
node:
  ephemeral:
    inactivity_timeout: 120s
database:
  type: sqlite
  sqlite:
    path: %s/db.sqlite
    write_ahead_log: true
log:
  level: warn
policy:
  mode: file
  path: %s/policy.hujson
unix_socket: %s/hs.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
`, c.URL, ports[0], ports[1], ports[2], cert, key, c.Dir, !opts.DERPDown, stun, c.Dir, c.Dir, c.Dir, c.Dir, c.Dir)
	if !opts.SlowJoin {
		b.WriteString("tuning:\n  batch_change_delay: 50ms\n  node_store_batch_timeout: 20ms\n")
	}
	b.WriteString("dns:\n  magic_dns: true\n  base_domain: " + BaseDomain + "\n  override_local_dns: false\n")
	if len(opts.SplitDNS) > 0 {
		b.WriteString("  nameservers:\n    split:\n")
		for dom, ns := range opts.SplitDNS {
			fmt.Fprintf(&b, "      %s: [%s]\n", dom, strings.Join(ns, ", "))
		}
	}
	if len(opts.ExtraRecords) > 0 {
		b.WriteString("  extra_records:\n")
		for name, ip := range opts.ExtraRecords {
			fmt.Fprintf(&b, "    - {name: %q, type: A, value: %q}\n", name, ip)
		}
	}
	return b.String()
}

// extraDERPRegions names the embedded DERP server twice more, as regions
// 901 and 902. netcheck stops probing once it has heard from three
// regions; with one region it waits out its 3 s STUN timeout on every
// join. All three regions are the same loopback server, so any home
// region choice relays fine.
func extraDERPRegions(port, stun int) string {
	var b strings.Builder
	b.WriteString("regions:\n")
	for _, id := range []int{901, 902} {
		fmt.Fprintf(&b, `  %d:
    regionid: %d
    regioncode: test%d
    regionname: test-loopback-%d
    nodes:
      - name: %da
        regionid: %d
        hostname: 127.0.0.1
        ipv4: 127.0.0.1
        ipv6: none
        stunport: %d
        stunonly: false
        derpport: %d
`, id, id, id, id, id, id, stun, port)
	}
	return b.String()
}

// deadDERPRegion is the DERP map of a DERPDown control: one region whose
// DERP and STUN ports have nothing behind them.
func deadDERPRegion() string {
	return fmt.Sprintf(`regions:
  900:
    regionid: 900
    regioncode: dead
    regionname: test-loopback-dead
    nodes:
      - name: 900a
        regionid: 900
        hostname: 127.0.0.1
        ipv4: 127.0.0.1
        ipv6: none
        stunport: %d
        stunonly: false
        derpport: %d
`, DERPDownPort, DERPDownPort)
}

func (c *Control) waitHealthy(timeout time.Duration) error {
	_, waitCh := c.process()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: time.Second, Transport: tr}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-waitCh:
			return fmt.Errorf("tailnettest: headscale exited at start:\n%s", c.Logs())
		default:
		}
		resp, err := hc.Get(c.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				// The CLI talks over the unix socket; wait for it too.
				if _, err := os.Stat(filepath.Join(c.Dir, "hs.sock")); err == nil {
					return nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("tailnettest: headscale not healthy after %v:\n%s", timeout, c.Logs())
}

// Logs returns what Headscale has printed so far.
func (c *Control) Logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logs.String()
}

// Run runs a headscale CLI command against this server and returns stdout.
func (c *Control) Run(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"-c", c.config()}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("headscale %s: %v: %s%s", strings.Join(args, " "), err, stderr.Bytes(), out)
	}
	return out, nil
}

// KeyOptions describe a preauth key.
type KeyOptions struct {
	Tags      []string
	Reusable  bool
	Ephemeral bool
	Expired   bool // expire the key right after creating it
}

// CreateKey returns a reusable, ephemeral preauth key carrying tags.
func (c *Control) CreateKey(tb testing.TB, tags ...string) string {
	tb.Helper()
	k, err := c.NewKey(KeyOptions{Tags: tags, Reusable: true, Ephemeral: true})
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// NewKey creates a preauth key.
func (c *Control) NewKey(o KeyOptions) (string, error) {
	args := []string{"preauthkeys", "create", "-o", "json", "--expiration", "1h"}
	if len(o.Tags) > 0 {
		args = append(args, "--tags", strings.Join(o.Tags, ","))
	} else {
		args = append(args, "--user", "1")
	}
	if o.Reusable {
		args = append(args, "--reusable")
	}
	if o.Ephemeral {
		args = append(args, "--ephemeral")
	}
	out, err := c.Run(args...)
	if err != nil {
		return "", err
	}
	var k struct {
		ID  json.Number `json:"id"`
		Key string      `json:"key"`
	}
	if err := json.Unmarshal(out, &k); err != nil || k.Key == "" {
		return "", fmt.Errorf("tailnettest: parsing preauth key: %v: %s", err, out)
	}
	if o.Expired {
		if _, err := c.Run("preauthkeys", "expire", "--id", k.ID.String()); err != nil {
			return "", err
		}
	}
	return k.Key, nil
}

// HSNode is a node as `headscale nodes list -o json` reports it.
type HSNode struct {
	ID          json.Number `json:"id"`
	Name        string      `json:"name"`
	GivenName   string      `json:"given_name"`
	IPAddresses []string    `json:"ip_addresses"`
	Tags        []string    `json:"tags"`
	Online      bool        `json:"online"`
	PreAuthKey  *struct {
		Ephemeral bool `json:"ephemeral"`
		Reusable  bool `json:"reusable"`
	} `json:"pre_auth_key"`
}

// Nodes lists the nodes the control plane knows.
func (c *Control) Nodes() ([]HSNode, error) {
	out, err := c.Run("nodes", "list", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ns []HSNode
	if err := json.Unmarshal(out, &ns); err != nil {
		return nil, fmt.Errorf("tailnettest: parsing nodes: %v: %s", err, out)
	}
	return ns, nil
}

// FindNode returns the node whose hostname is name, if listed.
func (c *Control) FindNode(name string) (HSNode, bool, error) {
	ns, err := c.Nodes()
	if err != nil {
		return HSNode{}, false, err
	}
	for _, n := range ns {
		if n.Name == name || n.GivenName == name {
			return n, true, nil
		}
	}
	return HSNode{}, false, nil
}

// WaitGone polls the node list until name is absent and returns how long
// that took from since, or an error after timeout.
func (c *Control) WaitGone(name string, since time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := since.Add(timeout)
	for {
		_, found, err := c.FindNode(name)
		if err != nil {
			return 0, err
		}
		if !found {
			return time.Since(since), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("node %q still listed %v after teardown", name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops Headscale and removes its directory.
func (c *Control) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	cmd, waitCh := c.cmd, c.waitCh
	c.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		select {
		case <-waitCh: // stopped, or exited on its own
		default:
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-waitCh:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-waitCh
			}
		}
	}
	os.RemoveAll(c.Dir)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func freeUDPPort() (int, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port, nil
}
