package tailnettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/wgengine/netstack"
)

var logf = func(string, ...any) {}

func init() {
	if os.Getenv("TSCONNECT_TEST_TSLOG") != "" {
		logf = log.Printf
	}
}

// Node is a tsnet service node on the test tailnet.
type Node struct {
	*tsnet.Server
	Name string     // hostname, the MagicDNS short name
	FQDN string     // name.tailnet.test
	IP4  netip.Addr // tailnet IPv4 address
	IP6  netip.Addr

	closeHook func()
	closeOnce sync.Once
	closeErr  error
}

// StartNode joins a tagged, ephemeral service node named name and waits
// until it is running. It is closed when tb ends.
func (c *Control) StartNode(tb testing.TB, name string, tags ...string) *Node {
	tb.Helper()
	n, err := c.NewNode(name, tags...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}

// NewNode is StartNode without a testing.TB; the caller must Close it.
func (c *Control) NewNode(name string, tags ...string) (*Node, error) {
	key, err := c.NewKey(KeyOptions{Tags: tags, Reusable: true, Ephemeral: true})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tsnode-")
	if err != nil {
		return nil, err
	}
	s := &tsnet.Server{
		Dir:        dir,
		Store:      new(mem.Store),
		Hostname:   name,
		Ephemeral:  true,
		AuthKey:    key,
		ControlURL: c.URL,
		Logf:       logf,
		UserLogf:   func(string, ...any) {},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.Up(ctx)
	if err != nil {
		s.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("tailnettest: node %s: %w", name, err)
	}
	n := &Node{Server: s, Name: name, FQDN: strings.TrimSuffix(st.Self.DNSName, ".")}
	n.IP4, n.IP6 = s.TailscaleIPs()
	removeDir := dir
	n.closeHook = func() { os.RemoveAll(removeDir) }
	return n, nil
}

// Close leaves the tailnet and removes the node's directory.
//
// The node does not log out: it vanishes, as a killed process would, and
// the control plane forgets it at the ephemeral inactivity timeout.
//
// tsnet's Close alone can block forever: it stops draining netstack's
// 512-packet outbound queue, then resets every TCP endpoint still
// registered (open, closing, or in TIME_WAIT for 60 s), and with more than
// 512 of them the resets fill the queue. So the node first stops (as
// `tailscale down` does: no more network maps, which would put its
// addresses back), then its tailnet addresses are removed from netstack,
// which leaves the resets no route: they are dropped, never queued.
//
// That still leaves a rarer hang (a TIME_WAIT endpoint holding a cached
// route answers a retransmission; the connector's teardown notes it too):
// after closeBound Close gives up with ErrCloseHung and leaves tsnet's
// goroutines behind, so that a test's cleanup cannot wedge the binary.
//
// Later calls return the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	if lc, err := n.LocalClient(); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lc.EditPrefs(ctx, &ipn.MaskedPrefs{WantRunningSet: true, Prefs: ipn.Prefs{WantRunning: false}})
		cancel()
	}
	if ns, ok := n.Sys().Netstack.GetOK(); ok {
		if impl, ok := ns.(*netstack.Impl); ok {
			impl.UpdateNetstackIPs(nil)
		}
	}
	err := CloseWithin(n.Server, closeBound)
	if n.closeHook != nil {
		n.closeHook()
	}
	return err
}

// WaitPeer waits until n's status lists a peer with address ip. With fast
// control tuning a node can be up before its peers have heard of it, and
// the first packet would then wait for WireGuard's 5 s handshake retry.
func (n *Node) WaitPeer(tb testing.TB, ip netip.Addr) {
	tb.Helper()
	if err := n.AwaitPeer(ip, 20*time.Second); err != nil {
		tb.Fatal(err)
	}
}

// AwaitPeer is WaitPeer without a testing.TB.
func (n *Node) AwaitPeer(ip netip.Addr, timeout time.Duration) error {
	lc, err := n.LocalClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := lc.Status(ctx)
		cancel()
		if err == nil && hasPeer(st, ip) {
			// Seeing the peer is not enough: the WireGuard handshake may
			// still be pending. A TSMP ping travels through WireGuard.
			pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := lc.Ping(pctx, ip, tailcfg.PingTSMP)
			cancel()
			if err == nil {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("tailnettest: %s never reached peer %v", n.Name, ip)
}

func hasPeer(st *ipnstate.Status, ip netip.Addr) bool {
	for _, p := range st.Peer {
		for _, a := range p.TailscaleIPs {
			if a == ip {
				return true
			}
		}
	}
	return false
}

// Counter counts connections a listener accepted.
type Counter struct{ n atomic.Int64 }

// Load returns how many connections were accepted.
func (c *Counter) Load() int64 { return c.n.Load() }

// ServeHTTP serves h on the node's tailnet port and returns a counter of
// accepted connections.
func (n *Node) ServeHTTP(tb testing.TB, port int, h http.Handler) *Counter {
	tb.Helper()
	ln, err := n.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		tb.Fatal(err)
	}
	cnt := new(Counter)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(countingListener{ln, cnt})
	tb.Cleanup(func() { srv.Close() })
	return cnt
}

// ServeTCP accepts on the node's tailnet port and hands each connection to
// handle (nil: echo).
func (n *Node) ServeTCP(tb testing.TB, port int, handle func(net.Conn)) *Counter {
	tb.Helper()
	ln, err := n.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		tb.Fatal(err)
	}
	if handle == nil {
		handle = func(c net.Conn) { io.Copy(c, c) }
	}
	cnt := new(Counter)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cnt.n.Add(1)
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return cnt
}

type countingListener struct {
	net.Listener
	cnt *Counter
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.cnt.n.Add(1)
	}
	return c, err
}

// Path is how a node's WireGuard packets reach a peer.
type Path struct {
	Endpoint   string        // peer's UDP endpoint ("127.0.0.1:41641") when direct
	DERPRegion int           // DERP region relaying the packets, when not direct
	Home       string        // the peer's home DERP region as status reports it ("" if none)
	Latency    time.Duration // of the disco ping that found the path
}

// Direct reports whether packets go straight to the peer's UDP endpoint.
func (p Path) Direct() bool { return p.Endpoint != "" }

func (p Path) String() string {
	if p.Direct() {
		return fmt.Sprintf("direct UDP to %s (disco ping %v)", p.Endpoint, p.Latency.Round(time.Microsecond))
	}
	return fmt.Sprintf("relayed by DERP region %d (disco ping %v)", p.DERPRegion, p.Latency.Round(time.Microsecond))
}

// PathTo sends disco pings to the peer with tailnet address ip until one
// is answered, and reports the path it took: direct UDP or a DERP relay.
func (n *Node) PathTo(ip netip.Addr, timeout time.Duration) (Path, error) {
	lc, err := n.LocalClient()
	if err != nil {
		return Path{}, err
	}
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := lc.Ping(ctx, ip, tailcfg.PingDisco)
		cancel()
		if err == nil && res.Err != "" {
			err = fmt.Errorf("%s", res.Err)
		}
		if err != nil {
			last = err
			continue
		}
		p := Path{Endpoint: res.Endpoint, DERPRegion: res.DERPRegionID, Latency: time.Duration(res.LatencySeconds * float64(time.Second))}
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		if st, err := lc.Status(ctx); err == nil {
			for _, ps := range st.Peer {
				if slices.Contains(ps.TailscaleIPs, ip) {
					p.Home = ps.Relay
				}
			}
		}
		cancel()
		return p, nil
	}
	return Path{}, fmt.Errorf("tailnettest: %s: no disco ping to %v answered in %v: %v", n.Name, ip, timeout, last)
}

// closeBound is how long Node.Close waits for tsnet's Close.
const closeBound = 20 * time.Second

// ErrCloseHung is what CloseWithin returns when Close did not return in
// time.
var ErrCloseHung = errors.New("tailnettest: Close did not return in time (tailscale.com v1.102.5's netstack shutdown with many TCP endpoints); its goroutines are left behind")

// CloseWithin closes c, giving up after d with ErrCloseHung. tsnet's
// Server.Close can block for ever after many TCP connections: netstack's
// Close stops the goroutine draining its 512-packet outbound queue, then
// gVisor's Stack.Close aborts every endpoint, each abort queues an RST, and
// the 513th blocks on the full queue.
func CloseWithin(c io.Closer, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("%w: still closing after %v", ErrCloseHung, d)
	}
}
