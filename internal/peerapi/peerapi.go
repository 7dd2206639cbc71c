// Package peerapi takes tailscale's peer API listener off the host network.
//
// A tsnet node (tailscale.com v1.102) serves its peer API on a listener
// that ipnlocal opens with net.ListenConfig; in netstack mode it binds it
// with an empty address (ipn/ipnlocal/peerapi.go, peerAPIServer.listen:
// "if s.b.sys.IsNetstack() { ipStr = "" }"), so every userspace node
// listens on TCP 0.0.0.0:<port> of the machine. Netstack does not need
// that socket: it hands tailnet connections for the peer API port straight
// to the peer API server (ServeConn). tailscale has no option to skip it:
// the ts_omit_peerapiserver build tag drops the whole server, and a library
// cannot set its users' build tags; ipnlocal's one hook on that path
// (initListenConfig) is reached only after an error return that makes
// ipnlocal index an empty slice for the node's second address (a panic).
//
// So [ShutdownHost] shuts the host socket down once the node has opened
// it: shutdown(2) on a listening socket makes the kernel stop listening at
// once (the port is free again, new connections are refused), the
// listener's Accept fails and its goroutine closes the descriptor itself.
// The peer API keeps working for peers, inside netstack. Between the
// node's listen and the shutdown — while the node reaches Running — the
// port is open; that window is the cost of not patching tailscale.
package peerapi

import (
	"net/url"
	"strconv"
)

// ports returns the ports of a node's peer API URLs (ipnstate's
// PeerStatus.PeerAPIURL, "http://100.64.0.1:45678").
func ports(urls []string) map[uint16]bool {
	ports := map[uint16]bool{}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil && p != 0 {
			ports[uint16(p)] = true
		}
	}
	return ports
}
