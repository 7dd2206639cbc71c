package connector

import (
	"context"
	"net/netip"
	"time"

	"tailscale.com/tailcfg"
)

// The first connection to a peer. A node is Running as soon as its own
// network map arrives, but a peer hears of the new node only from its own
// next map update, which may come a little later; and even then its disco
// layer learns of the node a moment before its WireGuard device does. A
// WireGuard handshake that reaches the peer before its device knows this
// node is dropped, and WireGuard sends the next one only after 5 s
// (RekeyTimeout): the first connection stalls for 5 s, or 10 s if the
// second is dropped too. Measured on the test tailnet: two first dials in
// three right after Start. tailscaled's proxy has the same stall.
//
// A disco ping is answered only by a peer whose disco layer knows this
// node. So before the first connection to a peer, greet pings it (every
// greetEvery, for at most greetFor) until it answers, then, if this node
// joined only just now, leaves the peer's WireGuard device greetSettle to
// catch up. After that, or after greetFor without an answer, the peer is
// greeted: later connections to it go straight through.
const (
	greetEvery = 100 * time.Millisecond
	greetFor   = 3 * time.Second
	// A disco answer shows that the peer's disco layer knows this node;
	// its WireGuard device learns of it from the same map update a moment
	// later, and drops a handshake that comes first. So within greetRecent
	// of reaching Running, when the peer may have only just heard of this
	// node, the first handshake waits greetSettle after the answer.
	greetRecent = time.Second
	greetSettle = 50 * time.Millisecond
)

func (c *Connector) greet(ctx context.Context, v *view, ip netip.Addr) {
	k, ok := v.peerFor(ip)
	if !ok {
		return
	}
	if _, done := c.greeted.Load(k); done {
		return
	}
	target, ok := v.pingAddr[k]
	if !ok {
		return
	}
	// A ping every greetEvery, each waiting as long as it takes: the
	// round trip may be longer than greetEvery (over DERP, say).
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, greetFor)
	defer cancel() // ends the pings still waiting
	answered := make(chan struct{}, 1)
	ping := func() {
		if res, err := c.lc.Ping(ctx, target, tailcfg.PingDisco); err == nil && res.Err == "" {
			select {
			case answered <- struct{}{}:
			default:
			}
		}
	}
	go ping()
	t := time.NewTicker(greetEvery)
	defer t.Stop()
	for {
		select {
		case <-answered:
			// The peer's WireGuard device is configured a moment after
			// its disco layer learns of this node: right after joining,
			// leave it that moment.
			if time.Since(c.runningAt) < greetRecent {
				select {
				case <-time.After(greetSettle):
				case <-parent.Done():
					return
				}
			}
			c.greeted.Store(k, true)
			return
		case <-ctx.Done():
			// No answer in greetFor: go ahead anyway, and do not wait
			// again for this peer; WireGuard's own retries still apply.
			if parent.Err() == nil {
				c.greeted.Store(k, true)
			}
			return
		case <-t.C:
			go ping()
		}
	}
}
