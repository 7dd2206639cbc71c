package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"tailscale.com/ipn"
	"tailscale.com/types/key"
	"tailscale.com/types/netmap"
)

// ErrNotRoutable reports a destination that does not route through the
// tailnet. The connector never uses the host network instead.
var ErrNotRoutable = errors.New("not reachable through the tailnet")

// RouteError is returned by Dial for a destination that is not a peer's
// address or inside an accepted subnet route. It matches ErrNotRoutable
// and syscall.EHOSTUNREACH with errors.Is.
type RouteError struct {
	Host string     // as requested
	Addr netip.Addr // what it resolved to
}

func (e *RouteError) Error() string {
	if e.Host == e.Addr.String() {
		return fmt.Sprintf("connector: %s is %v: it is not a tailnet peer or inside an accepted subnet route, and the host network is never used", e.Host, ErrNotRoutable)
	}
	return fmt.Sprintf("connector: %s resolved to %s, which is %v: it is not a tailnet peer or inside an accepted subnet route, and the host network is never used", e.Host, e.Addr, ErrNotRoutable)
}

func (e *RouteError) Unwrap() []error { return []error{ErrNotRoutable, syscall.EHOSTUNREACH} }

// view is an immutable snapshot of what the network map says, swapped
// whole on each update so Dial reads it without locks.
type view struct {
	suffix       string                  // MagicDNS suffix, no dots at the ends: "tailnet.test"
	self4, self6 netip.Addr              // this node's tailnet addresses
	names        map[string][]netip.Addr // lower-case FQDN (no trailing dot) -> addresses
	peerAddrs    map[netip.Addr]bool     // every peer's tailnet address
	routes       []netip.Prefix          // accepted subnet routes of peers
	routers      []key.NodePublic        // routes[i] is served by routers[i]
	peerKey      map[netip.Addr]key.NodePublic
	pingAddr     map[key.NodePublic]netip.Addr // a tailnet address of each peer, for disco pings
	dnsRoutes    map[string][]netip.Addr       // split-DNS suffix -> nameserver IPs ("" IP list: served by MagicDNS)
	peers        int
}

type viewHolder struct{ p atomic.Pointer[view] }

func (h *viewHolder) load() *view         { return h.p.Load() }
func (h *viewHolder) store(v *view)       { h.p.Store(v) }
func (v *view) routeList() []netip.Prefix { return slices.Clone(v.routes) }

func newView(nm *netmap.NetworkMap, acceptRoutes bool) *view {
	v := &view{
		suffix:    strings.Trim(nm.MagicDNSSuffix(), "."),
		names:     map[string][]netip.Addr{},
		peerAddrs: map[netip.Addr]bool{},
		peerKey:   map[netip.Addr]key.NodePublic{},
		pingAddr:  map[key.NodePublic]netip.Addr{},
		dnsRoutes: map[string][]netip.Addr{},
		peers:     len(nm.Peers),
	}
	for _, p := range nm.GetAddresses().All() {
		if p.Addr().Is4() {
			v.self4 = p.Addr()
		} else {
			v.self6 = p.Addr()
		}
	}
	addName := func(name string, addrs []netip.Addr) {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		if name != "" {
			v.names[name] = append(v.names[name], addrs...)
		}
	}
	for _, p := range nm.Peers {
		var addrs []netip.Addr
		for _, pfx := range p.Addresses().All() {
			if pfx.IsSingleIP() {
				addrs = append(addrs, pfx.Addr())
				v.peerAddrs[pfx.Addr()] = true
				v.peerKey[pfx.Addr()] = p.Key()
				if _, ok := v.pingAddr[p.Key()]; !ok || pfx.Addr().Is4() {
					v.pingAddr[p.Key()] = pfx.Addr()
				}
			}
		}
		addName(p.Name(), addrs)
		if acceptRoutes {
			for _, r := range p.PrimaryRoutes().All() {
				if r.Bits() > 0 { // never an exit route: that would be the whole internet
					v.routes = append(v.routes, r)
					v.routers = append(v.routers, p.Key())
				}
			}
		}
	}
	if self := nm.SelfNode; self.Valid() {
		addName(self.Name(), []netip.Addr{v.self4, v.self6})
	}
	for _, rec := range nm.DNS.ExtraRecords {
		if rec.Type == "" || rec.Type == "A" || rec.Type == "AAAA" {
			if ip, err := netip.ParseAddr(rec.Value); err == nil {
				addName(rec.Name, []netip.Addr{ip})
			}
		}
	}
	for suffix, resolvers := range nm.DNS.Routes {
		var ips []netip.Addr
		for _, r := range resolvers {
			if ip, err := netip.ParseAddr(r.Addr); err == nil {
				ips = append(ips, ip)
			} else if ap, err := netip.ParseAddrPort(r.Addr); err == nil {
				ips = append(ips, ap.Addr())
			} else {
				ips = append(ips, netip.Addr{}) // DoH or other: not dialable through us
			}
		}
		v.dnsRoutes[strings.ToLower(strings.Trim(suffix, "."))] = ips
	}
	return v
}

// routable reports whether ip is reached through the tailnet.
func (v *view) routable(ip netip.Addr) bool {
	ip = ip.Unmap()
	if v.peerAddrs[ip] {
		return true
	}
	for _, r := range v.routes {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// hasPeer reports whether k is a peer with an address in the map.
func (v *view) hasPeer(k key.NodePublic) bool {
	_, ok := v.pingAddr[k]
	return ok
}

// peerFor returns the peer that carries traffic to ip: the peer itself,
// or the router of the subnet route that contains it.
func (v *view) peerFor(ip netip.Addr) (key.NodePublic, bool) {
	if k, ok := v.peerKey[ip]; ok {
		return k, true
	}
	for i, r := range v.routes {
		if r.Contains(ip) {
			return v.routers[i], true
		}
	}
	return key.NodePublic{}, false
}

// dropGone ends the connections of peers that v no longer lists, and
// forgets that they were greeted: if such a peer comes back, its WireGuard
// device has forgotten this node.
func (c *Connector) dropGone(v *view) {
	for _, g := range c.conns.prune(v) {
		c.greeted.Delete(g.peer)
		c.userLogf("%s (%s) left the tailnet's network map: closed %d connection(s) to it", g.host, g.peer.ShortString(), g.count)
	}
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
// notice carries it.
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

func (c *Connector) applyNetMap(nm *netmap.NetworkMap) {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	v := newView(nm, !c.cfg.IgnoreSubnetRoutes)
	c.view.store(v)
	c.dropGone(v)
}

// Dial connects to addr ("host:port") through the tailnet. host may be a
// MagicDNS short name ("grafana"), a FQDN, a split-DNS name, or an IP
// address. Only TCP is supported.
//
// The allowlist (Config.Allow) is applied to the requested name (short
// names expanded to the tailnet FQDN) or IP before anything else; a denial
// is a *dnsfilter.DeniedError. Where the name resolved must then be on the
// tailnet.
//
// The host's resolver and network are never used: a name the tailnet
// cannot resolve fails with a *net.DNSError, and an address outside the
// tailnet fails with a *RouteError before any packet is sent. Errors from
// the tailnet stack are mapped to the usual syscall errors
// (ECONNREFUSED, EHOSTUNREACH…) so callers can tell them apart.
//
// The connection is closed by the connector when the peer that carries it
// leaves the network map (see peerConns).
func (c *Connector) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("connector: network %q not supported: only tcp", network)}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("connector: bad port %q", portStr)}
	}
	// The allowlist decides on the name before anything is resolved: a
	// denied name causes no DNS query and no packet. What is resolved is
	// the canonical form it checked.
	d := c.cfg.Allow.Check(c.expand(host), uint16(port))
	if err := d.Err(host, uint16(port)); err != nil {
		return nil, err
	}
	if d.Host != "" {
		host = d.Host
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.dialTimeout())
		defer cancel()
	}
	ips, err := c.Resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	return c.dialAddrs(ctx, host, ips, uint16(port))
}

// dialAddrs dials the first routable address of ips.
func (c *Connector) dialAddrs(ctx context.Context, host string, ips []netip.Addr, port uint16) (net.Conn, error) {
	v := c.view.load()
	if v == nil {
		return nil, net.ErrClosed
	}
	var routeErr error
	for _, ip := range ips {
		ip = ip.Unmap()
		if !v.routable(ip) {
			if routeErr == nil {
				routeErr = &RouteError{Host: host, Addr: ip}
			}
			continue
		}
		src := v.self4
		if ip.Is6() {
			src = v.self6
		}
		c.greet(ctx, v, ip)
		dst := netip.AddrPortFrom(ip, port)
		conn, err := c.dialTCP(ctx, src, dst)
		if err != nil {
			return nil, dialError(ctx, dst, err)
		}
		k, ok := v.peerFor(ip)
		if !ok { // cannot happen: routable means a peer carries ip
			return conn, nil
		}
		tracked := c.conns.track(k, host, conn)
		// The peer may have left while this dial was under way: a map
		// stored before track was not pruned of this connection.
		if !c.view.load().hasPeer(k) {
			tracked.Close()
			return nil, &PeerLeftError{Host: host}
		}
		return tracked, nil
	}
	return nil, routeErr
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
// with errors.Is. gVisor reports them as plain strings.
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

// Resolve returns the tailnet addresses of host. IP literals are returned
// as they are; MagicDNS names (short or FQDN) come from the network map;
// other names are asked of the nameservers of the split-DNS route that
// covers them, through the tailnet, and only when all of those nameservers
// are on the tailnet.
func (c *Connector) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if ip.Zone() != "" {
			return nil, &net.DNSError{Err: "zoned addresses are not tailnet addresses", Name: host}
		}
		return []netip.Addr{ip.Unmap()}, nil
	}
	v := c.view.load()
	if v == nil {
		return nil, net.ErrClosed
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" || strings.HasSuffix(name, ".") {
		return nil, &net.DNSError{Err: "malformed name", Name: host, IsNotFound: true}
	}
	if !strings.Contains(name, ".") && v.suffix != "" {
		name += "." + v.suffix
	}
	if ips, ok := v.names[name]; ok {
		return ips, nil
	}
	route, ok := v.dnsRouteFor(name)
	if !ok {
		return nil, &net.DNSError{Err: "no such host on the tailnet (not a MagicDNS name, and no split-DNS route covers it; the host resolver is never used)", Name: host, IsNotFound: true}
	}
	if route != "" && route == v.suffix {
		// MagicDNS answers its own domain from the map we already have.
		return nil, &net.DNSError{Err: "no such host on the tailnet", Name: host, IsNotFound: true}
	}
	for _, ns := range v.dnsRoutes[route] {
		if !ns.IsValid() || !v.routable(ns) {
			return nil, &net.DNSError{Err: fmt.Sprintf("the split-DNS route for %q has nameservers outside the tailnet; the connector will not send queries through the host network", route), Name: host}
		}
	}
	return c.queryDNS(ctx, host, name, v.dnsRoutes[route])
}

// dnsRouteFor returns the longest split-DNS suffix covering name.
func (v *view) dnsRouteFor(name string) (string, bool) {
	best, found := "", false
	for suffix := range v.dnsRoutes {
		if (name == suffix || strings.HasSuffix(name, "."+suffix)) && (!found || len(suffix) > len(best)) {
			best, found = suffix, true
		}
	}
	return best, found
}

// queryDNS asks the split-DNS route's nameservers for A, then AAAA,
// records, through the node's own network stack.
//
// tsnet's resolver (LocalClient.QueryDNS) is not used on purpose: its
// forwarder sends UDP queries from a host socket, even to tailnet
// nameservers, so in a userspace node they would leave through the host
// network (tailscale net/dns/resolver/forwarder.go, packetListener).
func (c *Connector) queryDNS(ctx context.Context, host, name string, servers []netip.Addr) ([]netip.Addr, error) {
	var lastErr error
	for _, ns := range servers {
		for _, qtype := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
			ips, err := c.exchange(ctx, ns, name, qtype)
			if err != nil {
				lastErr = err
				break // try the next server
			}
			if len(ips) > 0 {
				return ips, nil
			}
		}
		if lastErr == nil {
			break // an authoritative "no records": do not ask the others
		}
	}
	if lastErr != nil {
		return nil, &net.DNSError{Err: "tailnet nameserver: " + lastErr.Error(), Name: host, IsTemporary: true}
	}
	return nil, &net.DNSError{Err: "no such host on the tailnet", Name: host, IsNotFound: true}
}

// exchange sends one query over UDP through netstack, and over TCP if the
// answer was truncated.
func (c *Connector) exchange(ctx context.Context, server netip.Addr, name string, qtype dnsmessage.Type) ([]netip.Addr, error) {
	qname, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return nil, err
	}
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: uint16(time.Now().UnixNano()), RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: qtype, Class: dnsmessage.ClassINET}},
	}
	pkt, err := q.Pack()
	if err != nil {
		return nil, err
	}
	v := c.view.load()
	if v == nil {
		return nil, net.ErrClosed
	}
	src := v.self4
	if server.Is6() {
		src = v.self6
	}
	dst := netip.AddrPortFrom(server, 53)
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	deadline, _ := qctx.Deadline()

	var resp []byte
	for attempt := 0; attempt < 2 && resp == nil; attempt++ {
		conn, err := c.ns.DialContextUDPWithBind(qctx, src, dst)
		if err != nil {
			return nil, err
		}
		conn.SetDeadline(time.Now().Add(time.Until(deadline) / time.Duration(2-attempt)))
		buf := make([]byte, 1232)
		if _, err = conn.Write(pkt); err == nil {
			var n int
			if n, err = conn.Read(buf); err == nil {
				resp = buf[:n]
			}
		}
		conn.Close()
		if err != nil && qctx.Err() != nil {
			return nil, err
		}
	}
	if resp == nil {
		return nil, fmt.Errorf("no answer from %v", server)
	}
	ips, truncated, err := parseAnswer(resp, q.Header.ID)
	if err != nil || !truncated {
		return ips, err
	}
	conn, err := c.ns.DialContextTCPWithBind(qctx, src, dst)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	framed := append([]byte{byte(len(pkt) >> 8), byte(len(pkt))}, pkt...)
	if _, err := conn.Write(framed); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, err
	}
	resp = make([]byte, int(l[0])<<8|int(l[1]))
	if _, err := io.ReadFull(conn, resp); err != nil {
		return nil, err
	}
	ips, _, err = parseAnswer(resp, q.Header.ID)
	return ips, err
}

// parseAnswer extracts A and AAAA records from a DNS response.
func parseAnswer(msg []byte, id uint16) (ips []netip.Addr, truncated bool, err error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, false, err
	}
	if h.ID != id || !h.Response {
		return nil, false, errors.New("mismatched DNS response")
	}
	switch h.RCode {
	case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
	default:
		return nil, false, fmt.Errorf("DNS %v", h.RCode)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, false, err
	}
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			break
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			if r, err := p.AResource(); err == nil {
				ips = append(ips, netip.AddrFrom4(r.A))
			}
		case dnsmessage.TypeAAAA:
			if r, err := p.AAAAResource(); err == nil {
				ips = append(ips, netip.AddrFrom16(r.AAAA))
			}
		default:
			p.SkipAnswer()
		}
	}
	return ips, h.Truncated, nil
}
