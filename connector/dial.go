package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"tailscale.com/types/key"
	"tailscale.com/types/netmap"

	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/socks"
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
// leaves the network map (see peerConns), after Config.IdleTimeout without
// traffic, and by Close. Each connection, and each failed Dial, is counted
// in Stats and audited (Config.AuditLog, Config.Audit) with protocol
// "dial". At most Config.MaxConns are open at once: beyond them Dial fails
// with ErrTooManyConns.
func (c *Connector) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	o := origin{protocol: ProtocolDial}
	if req := socks.RequestFromContext(ctx); req != nil {
		o = origin{protocol: req.Protocol, client: req.Client, req: req}
	}
	return c.dialFlow(ctx, o, network, addr)
}

// splitAddr parses Dial's network and "host:port" address.
func splitAddr(network, addr string) (string, uint16, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return "", 0, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("connector: network %q not supported: only tcp", network)}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return host, 0, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("connector: bad port %q", portStr)}
	}
	return host, uint16(port), nil
}

// dial is Dial without the connection layer. It returns the allowlist's
// decision; when it allowed, its Host is the canonical host resolved and
// dialed. count says whether to count the decision in the rule hits.
func (c *Connector) dial(ctx context.Context, host string, port uint16, count bool) (net.Conn, dnsfilter.Decision, error) {
	// The allowlist decides on the name before anything is resolved: a
	// denied name causes no DNS query and no packet. What is resolved is
	// the canonical form it checked.
	d := c.Check(host, port)
	if count {
		c.flows.m.hit(d)
	}
	if err := d.Err(host, port); err != nil {
		return nil, d, err
	}
	if d.Host != "" {
		host = d.Host
	}
	d.Host = host
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.DialTimeout)
		defer cancel()
	}
	// What is resolved is exactly what was checked: the canonical form,
	// already expanded.
	ips := []netip.Addr{}
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = append(ips, ip.Unmap())
	} else if ips, err = c.resolveName(ctx, host, host); err != nil {
		return nil, d, err
	}
	conn, err := c.dialAddrs(ctx, host, ips, port)
	return conn, d, err
}

// dialAddrs dials the first routable address of ips.
func (c *Connector) dialAddrs(ctx context.Context, host string, ips []netip.Addr, port uint16) (net.Conn, error) {
	v := c.view.load()
	if v == nil {
		return nil, net.ErrClosed
	}
	// Deny rules for addresses hold whatever the name: a name with any
	// address they deny is denied (a tailnet node has an IPv6 address
	// beside the IPv4 one a rule such as !100.64.10.0/24 names).
	for _, ip := range ips {
		if d := c.cfg.Allow.CheckResolved(ip, port); !d.Allow {
			c.flows.m.hit(d)
			return nil, d.Err(host, port)
		}
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
	return c.resolveName(ctx, host, strings.ToLower(strings.TrimSuffix(c.expand(host), ".")))
}

// resolveName is Resolve for name, an absolute name in lower case without
// the trailing dot: what the allowlist checked. host is as requested, for
// errors.
func (c *Connector) resolveName(ctx context.Context, host, name string) ([]netip.Addr, error) {
	v := c.view.load()
	if v == nil {
		return nil, net.ErrClosed
	}
	if name == "" || strings.HasSuffix(name, ".") {
		return nil, &net.DNSError{Err: "malformed name", Name: host, IsNotFound: true}
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
