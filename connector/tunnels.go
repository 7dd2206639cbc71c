package connector

import (
	"fmt"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"tailscale.com/types/key"
)

// Connections to a peer that leaves the network map. When the control
// plane drops a peer (an admin deleted it, its key expired, an ephemeral
// node was reaped after a crash, an ACL change hides it), WireGuard drops
// it too, and a connection to it carries nothing more: its client would
// wait for the proxy's idle timeout (1 h by default) or forever. So every
// connection Dial returns is tracked by the peer that carries it, and
// those of a peer missing from a new network map are closed at once.
type peerConns struct {
	mu    sync.Mutex
	conns map[key.NodePublic]map[*peerConn]struct{}
}

// track registers conn, dialed to host, as carried by peer k and returns
// the connection to hand out: its Close forgets it.
func (pc *peerConns) track(k key.NodePublic, host string, conn *gonet.TCPConn) *peerConn {
	t := &peerConn{TCPConn: conn, pc: pc, k: k, host: host}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.conns == nil {
		pc.conns = map[key.NodePublic]map[*peerConn]struct{}{}
	}
	if pc.conns[k] == nil {
		pc.conns[k] = map[*peerConn]struct{}{}
	}
	pc.conns[k][t] = struct{}{}
	return t
}

func (pc *peerConns) forget(t *peerConn) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.conns[t.k], t)
	if len(pc.conns[t.k]) == 0 {
		delete(pc.conns, t.k)
	}
}

// goneConns is what prune closed of one peer.
type goneConns struct {
	peer  key.NodePublic
	host  string // a name one of them was dialed by
	count int
}

// prune closes the connections of every peer that v does not list, and
// says what it closed.
func (pc *peerConns) prune(v *view) []goneConns {
	var conns []*peerConn
	var gone []goneConns
	pc.mu.Lock()
	for k, set := range pc.conns {
		if v.hasPeer(k) {
			continue
		}
		g := goneConns{peer: k, count: len(set)}
		for t := range set {
			conns = append(conns, t)
			g.host = t.host
		}
		gone = append(gone, g)
	}
	pc.mu.Unlock()
	for _, t := range conns {
		t.left.Store(true)
		t.Close()
	}
	return gone
}

// peerConn is a connection Dial returned, tracked until it is closed.
// CloseRead and CloseWrite are the netstack connection's own.
type peerConn struct {
	*gonet.TCPConn
	pc   *peerConns
	k    key.NodePublic
	host string
	once sync.Once
	left atomic.Bool // closed because the peer left the network map
}

// PeerLeftError is what Read and Write of a connection from Dial return
// once the connector closed it because the peer carrying it left the
// tailnet's network map, and what Dial returns when the peer left while
// it dialed.
type PeerLeftError struct{ Host string }

func (e *PeerLeftError) Error() string {
	return fmt.Sprintf("connector: connection closed: %s left the tailnet (it is no longer in the network map)", e.Host)
}

func (t *peerConn) Read(p []byte) (int, error) {
	n, err := t.TCPConn.Read(p)
	if err != nil && t.left.Load() {
		err = &PeerLeftError{Host: t.host}
	}
	return n, err
}

func (t *peerConn) Write(p []byte) (int, error) {
	n, err := t.TCPConn.Write(p)
	if err != nil && t.left.Load() {
		err = &PeerLeftError{Host: t.host}
	}
	return n, err
}

func (t *peerConn) Close() error {
	t.once.Do(func() { t.pc.forget(t) })
	return t.TCPConn.Close()
}
