package tailnettest

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/ipn/ipnstate"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
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
func (n *Node) Close() error {
	err := n.Server.Close()
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
