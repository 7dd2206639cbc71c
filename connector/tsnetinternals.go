package connector

// Everything the connector relies on that tailscale.com does not promise:
// internals of tsnet, netstack and gVisor, and behaviour seen in their
// source rather than documented. Each use says why it is needed and names
// the test that pins what it relies on, so that a tailscale.com upgrade
// fails that test rather than misbehaving. (The peer API's host listener,
// another such internal, is internal/peerapi's; TestUp/listeners and
// TestDemoListeners pin it.)

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"tailscale.com/ipn"
	"tailscale.com/tsnet"
	"tailscale.com/types/netmap"
	"tailscale.com/wgengine/netstack"
)

// netstackOf returns the node's userspace network stack. tsnet keeps it in
// Sys().Netstack as an any; the connector dials through it directly (never
// through tsnet.Server.Dial, which falls back to the host network).
// Pinned by every test that dials; TestTSNetInternals names it.
func netstackOf(srv *tsnet.Server) (*netstack.Impl, error) {
	ns, ok := srv.Sys().Netstack.GetOK()
	if !ok {
		return nil, errors.New("connector: tsnet has no netstack")
	}
	impl, ok := ns.(*netstack.Impl)
	if !ok {
		return nil, fmt.Errorf("connector: unexpected netstack type %T", ns)
	}
	return impl, nil
}

// startWatch follows network map updates for the connector's lifetime and
// returns once the first one has been applied.
//
// On Linux, tailscale v1.102 sends a watcher the whole network map only
// once, when the watch starts (ipn.NotifyInitialNetMap); later changes come
// as SelfChange (a new full map arrived) or, with ipn.NotifyPeerChanges, as
// peers added, changed or removed. So each such notice makes the refresh
// loop start a short-lived watch of its own to read the whole current map:
// a peer that joins after this node, a peer that leaves, new routes or DNS
// settings all reach the view. Bursts of notices collapse into one read.
func (c *Connector) startWatch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.Background())
	w, err := c.lc.WatchIPNBus(wctx, ipn.NotifyInitialNetMap|ipn.NotifyNoPrivateKeys|ipn.NotifyPeerChanges)
	if err != nil {
		cancel()
		return fmt.Errorf("connector: watching the network map: %w", err)
	}
	c.stopWatch, c.watchDone = cancel, make(chan struct{})
	first := make(chan struct{})
	changed := make(chan struct{}, 1)
	go func() {
		defer w.Close()
		defer close(changed) // ends the refresh loop, which then closes watchDone
		firstDone := false
		for {
			n, err := w.Next()
			if err != nil {
				return
			}
			switch {
			case n.NetMap != nil:
				c.applyNetMap(n.NetMap)
				if !firstDone {
					firstDone = true
					close(first)
				}
			case n.SelfChange != nil || len(n.PeersChanged) > 0 || len(n.PeersRemoved) > 0:
				select {
				case changed <- struct{}{}:
				default: // a read is already due
				}
			}
		}
	}()
	go func() {
		defer close(c.watchDone)
		for range changed {
			if nm, err := c.readNetMap(wctx); err == nil {
				old := c.view.load()
				c.applyNetMap(nm)
				// The peer API listens anew only when the node's own
				// addresses change.
				if v := c.view.load(); old == nil || v.self4 != old.self4 || v.self6 != old.self6 {
					c.hidePeerAPI()
				}
			} else if wctx.Err() == nil {
				c.logf("connector: reading the network map after a change: %v", err)
			}
		}
	}()
	select {
	case <-first:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("connector: no network map: %w", ctx.Err())
	}
}

// readNetMap returns the whole current network map: a new watch's first
// notice carries it. ipn.Notify.NetMap is deprecated, and its comment
// points at LocalClient.NetMap for one-shot reads; tailscale.com v1.102.5
// has no such call, and ipnstate.Status lacks the DNS configuration
// (extra records, split-DNS routes) the view needs, so the initial notice
// of a watch is the only supported way to read the whole map. Pinned by
// TestPeerJoinedLater, TestPeerRemovedEndsTunnels and the split-DNS tests.
func (c *Connector) readNetMap(ctx context.Context) (*netmap.NetworkMap, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := c.lc.WatchIPNBus(ctx, ipn.NotifyInitialNetMap|ipn.NotifyNoPrivateKeys)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for {
		n, err := w.Next()
		if err != nil {
			return nil, err
		}
		if n.NetMap != nil {
			return n.NetMap, nil
		}
	}
}

// synRetryAfter is how long one attempt of a TCP dial waits for the
// handshake before dialTCP starts another, from a new local port. Two SYNs
// have gone out by then (gVisor's initial RTO is 1 s).
const synRetryAfter = 3 * time.Second

// dialTCP dials dst from src through netstack, in attempts of
// synRetryAfter each until ctx ends.
//
// Netstack picks each connection's local port at random (gVisor,
// PortManager.PickEphemeralPort), so a new connection may reuse the
// 4-tuple of an earlier one that the peer still holds in TIME_WAIT (it
// does when the service closed first, as an HTTP server with "Connection:
// close" does; 60 s by default). A peer whose TCP is gVisor too — a tsnet
// service, a userspace-networking subnet router — silently drops a SYN for
// such a tuple (rcv.go handleTimeWaitSegment: a SYN may reopen a TIME_WAIT
// connection only through a listening endpoint, and tsnet's listeners are
// not), and every retransmission with it: the dial would hang until its
// timeout. Measured: one request in ~500 to a tsnet HTTP service that
// closes first hung until its deadline. A new attempt takes a new random
// port. A SYN that is merely slow (lost once, or queued behind a WireGuard
// handshake) costs the same either way.
func (c *Connector) dialTCP(ctx context.Context, src netip.Addr, dst netip.AddrPort) (*gonet.TCPConn, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, synRetryAfter)
		conn, err := c.ns.DialContextTCPWithBind(actx, src, dst)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil || !timedOut {
			return nil, err
		}
	}
}

// dialError maps a netstack dial error to the syscall errors callers test
// with errors.Is. gVisor reports them as plain strings. Pinned by
// TestTSNetInternals/refused and TestACLFences.
func dialError(ctx context.Context, dst netip.AddrPort, err error) error {
	var errno error
	msg := err.Error()
	switch {
	case ctx.Err() != nil:
		errno = fmt.Errorf("%w (%w)", os.ErrDeadlineExceeded, ctx.Err())
	case strings.Contains(msg, "connection was refused"):
		errno = syscall.ECONNREFUSED
	case strings.Contains(msg, "no route to host"):
		errno = syscall.EHOSTUNREACH
	case strings.Contains(msg, "network is unreachable"):
		errno = syscall.ENETUNREACH
	case strings.Contains(msg, "timed out"):
		errno = os.ErrDeadlineExceeded
	default:
		errno = err
	}
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: errno}
}

// dropAddresses removes the node's addresses from netstack before tsnet's
// Close. tsnet's Close stops the goroutine draining netstack's outbound
// queue (512 packets) and only then resets every TCP endpoint still
// registered (open, closing or in TIME_WAIT, which lasts 60 s): with more
// than 512 of them the RSTs fill the queue and Close blocks forever. A
// successful logout removes the node's addresses, so the RSTs have no route
// and are never queued; when logging out failed (control plane down) they
// are still there. The peers learn from the control plane, or the missing
// node, that the connections are gone.
// Pinned by TestCloseManyTunnelsControlDown.
func dropAddresses(ns *netstack.Impl) { ns.UpdateNetstackIPs(nil) }

// emptyDir unlinks what tsnet's Start left in the private directory: its
// log buffers (tsnet keeps writing them through the descriptors it holds)
// and the log configuration it reads only then. A process of the same uid
// — the wrapped command — can open the directory but finds nothing of the
// node's in it; in the tsconnect command it cannot reach the descriptors
// either, as the process is undumpable and its /proc/<pid>/fd is root's.
func emptyDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != tsnetProfileData {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// tsnetProfileData is where tsnet keeps per-profile files: in the
// connector's mode only a network map cache (ipn/ipnlocal/diskcache.go),
// which it creates whenever its home relay changes (writing the node's own
// map there when the node belongs to a user) and which an ephemeral node
// never reads back. blockProfileData takes the name with an empty,
// read-only file, so tsnet's MkdirAll fails and nothing is written; tsnet
// logs the error and carries on.
const tsnetProfileData = "profile-data"

// Pinned by TestPrivateDirEmpty.
func blockProfileData(dir string) error {
	return os.WriteFile(filepath.Join(dir, tsnetProfileData), nil, 0o400)
}
