package connector

// The network of an isolated command (tsconnect run --isolate=netns): a
// network namespace whose only interfaces are lo and a TUN device whose
// other end is here. Its packets go into a userspace network stack of
// their own (gVisor's, as the tailnet node's is); every TCP connection the
// command opens is terminated there and opened again through the
// connection layer (dialFlow), so it is allowed, denied, inspected and
// audited exactly as the same connection through the proxy. A DNS server
// on the TUN side answers names the allowlist allows with an address of
// its own, one per name, so the connection's name is known however the
// command connects: that address, not the tailnet one, is what the
// command sees. Nothing else is served: no route leaves the namespace.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tsconnect/tsconnect/socks"
)

// Isolated is the network of one isolated namespace, served by ServeTUN.
type Isolated struct {
	c    *Connector
	opts IsolateOptions
	tun  *os.File
	s    *stack.Stack
	dns  *gonet.UDPConn
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu    sync.Mutex
	names map[string]netip.Addr // canonical name -> its IPv4 address in the pool
	addrs map[netip.Addr]string // the other way round
}

// ServeTUN serves the network of an isolated namespace on tun, a TUN
// device (IFF_TUN|IFF_NO_PI, MTU IsolatedMTU) whose namespace has
// IsolatedAddr on it, a default route through it and IsolatedDNS as its
// only nameserver (see ResolvConf). ServeTUN owns tun; Close ends it.
func (c *Connector) ServeTUN(tun *os.File, opts IsolateOptions) (*Isolated, error) {
	if opts.DeniedRcode == 0 {
		opts.DeniedRcode = dnsmessage.RCodeNameError
	}
	ep, err := fdbased.New(&fdbased.Options{
		FDs: []int{int(tun.Fd())},
		MTU: IsolatedMTU,
		// The kernel sends a TUN device packets whose checksums it
		// computed; what the stack sends back it checks.
		RXChecksumOffload: true,
	})
	if err != nil {
		tun.Close()
		return nil, fmt.Errorf("connector: isolated network: %w", err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	iso := &Isolated{c: c, opts: opts, tun: tun, s: s, names: map[string]netip.Addr{}, addrs: map[netip.Addr]string{}}
	iso.ctx, iso.stop = context.WithCancel(context.Background())
	fail := func(what string, e tcpip.Error) (*Isolated, error) {
		iso.Close()
		return nil, fmt.Errorf("connector: isolated network: %s: %v", what, e)
	}
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	if e := s.CreateNIC(isolatedNIC, ep); e != nil {
		return fail("NIC", e)
	}
	// Every address is the stack's: a connection to any of them is
	// terminated here and decided by the connection layer.
	s.SetPromiscuousMode(isolatedNIC, true)
	s.SetSpoofing(isolatedNIC, true)
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: isolatedNIC},
		{Destination: header.IPv6EmptySubnet, NIC: isolatedNIC},
	})
	dnsAddr := tcpip.AddrFrom4(IsolatedDNS.As4())
	if e := s.AddProtocolAddress(isolatedNIC, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: dnsAddr.WithPrefix()}, stack.AddressProperties{}); e != nil {
		return fail("DNS address", e)
	}
	fwd := tcp.NewForwarder(s, 0, 1024, iso.accept)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	dns, err := gonet.DialUDP(s, &tcpip.FullAddress{NIC: isolatedNIC, Addr: dnsAddr, Port: 53}, nil, ipv4.ProtocolNumber)
	if err != nil {
		iso.Close()
		return nil, fmt.Errorf("connector: isolated network: DNS server: %w", err)
	}
	iso.dns = dns
	iso.wg.Add(1)
	go iso.serveDNS()
	return iso, nil
}

// ResolvConf is the resolv.conf of an isolated namespace: its DNS server,
// and the tailnet's MagicDNS suffix to search, so short names work.
func (c *Connector) ResolvConf() string {
	conf := "# tsconnect run --isolate: names resolve inside the tailnet, as the allowlist allows\nnameserver " + IsolatedDNS.String() + "\n"
	if v := c.view.load(); v != nil && v.suffix != "" {
		conf += "search " + v.suffix + "\n"
	}
	return conf + "options ndots:1 attempts:1 timeout:5\n"
}

// Close stops serving: the namespace's connections end.
func (iso *Isolated) Close() error {
	iso.stop()
	if iso.dns != nil {
		iso.dns.Close()
	}
	iso.s.RemoveNIC(isolatedNIC) // stops fdbased's readers, and waits for them
	iso.s.Close()
	iso.wg.Wait()
	iso.s.Wait()
	return iso.tun.Close()
}

// accept is a SYN from the namespace: the connection is dialed through the
// connection layer first, and the command's handshake completes only if
// that worked; else it gets a RST at once.
func (iso *Isolated) accept(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := addrOf(id.LocalAddress)
	host := dst.String()
	if isolatedPool6.Contains(dst) {
		if v4 := v4of(dst); v6of(v4) == dst {
			dst = v4
		} else {
			dst = isolatedPool.Addr() // .0.0: never handed out
		}
	}
	if isolatedPool.Contains(dst) {
		iso.mu.Lock()
		name, ok := iso.addrs[dst]
		iso.mu.Unlock()
		if !ok {
			r.Complete(true)
			iso.refused(AuditRecord{Client: clientOf(id), Protocol: ProtocolIsolate, Host: host, Port: id.LocalPort,
				Reason: "an address tsconnect's DNS server never handed out"})
			return
		}
		host = name
	}
	o := origin{protocol: ProtocolIsolate, client: clientOf(id)}
	remote, err := iso.c.dialFlow(iso.ctx, o, "tcp", net.JoinHostPort(host, strconv.Itoa(int(id.LocalPort))))
	if err != nil {
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, e := r.CreateEndpoint(&wq)
	if e != nil {
		r.Complete(true)
		remote.Close()
		return
	}
	r.Complete(false)
	local := gonet.NewTCPConn(&wq, ep)
	socks.Splice(local, remote) // the flow's audit record has the outcome
	local.Close()
	remote.Close()
}

func addrOf(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip.Unmap()
}

func clientOf(id stack.TransportEndpointID) string {
	return netip.AddrPortFrom(addrOf(id.RemoteAddress), id.RemotePort).String()
}

// serveDNS answers the namespace's queries, one at a time: each is
// answered from the network map or, for split-DNS names, by a query
// through the tailnet, as Dial resolves.
func (iso *Isolated) serveDNS() {
	defer iso.wg.Done()
	buf := make([]byte, 1500)
	busy := make(chan struct{}, 64) // queries answered at once; more are dropped, and retried by the client
	for {
		n, from, err := iso.dns.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case busy <- struct{}{}:
		default:
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		iso.wg.Add(1)
		go func() {
			defer func() { <-busy; iso.wg.Done() }()
			if answer := iso.answer(q, from.String()); answer != nil {
				iso.dns.WriteTo(answer, from)
			}
		}()
	}
}

// answer is the reply to one query, nil for what is not one.
func (iso *Isolated) answer(query []byte, client string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	q, err := p.Question()
	reply := dnsmessage.Message{Header: dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true, Authoritative: true,
	}}
	if err != nil || h.OpCode != 0 {
		reply.RCode = dnsmessage.RCodeFormatError
		if h.OpCode != 0 {
			reply.RCode = dnsmessage.RCodeNotImplemented
		}
		out, _ := reply.Pack()
		return out
	}
	reply.Questions = []dnsmessage.Question{q}
	reply.RCode = iso.lookup(q, client, &reply.Answers)
	out, err := reply.Pack()
	if err != nil {
		return nil
	}
	return out
}

// lookup fills in the answer to q and returns its rcode.
func (iso *Isolated) lookup(q dnsmessage.Question, client string, answers *[]dnsmessage.Resource) dnsmessage.RCode {
	name := strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")
	if q.Class != dnsmessage.ClassINET || name == "" {
		return dnsmessage.RCodeNameError
	}
	c := iso.c
	host := c.expand(name)
	d := c.cfg.Allow.CheckAnyPort(host)
	if !d.Allow {
		if d.Host != "" && q.Type != dnsmessage.TypeAAAA && !strings.HasSuffix(host, ".arpa") { // one record per lookup, not per A and AAAA
			c.flows.m.hit(d)
			iso.refused(AuditRecord{Client: client, Protocol: ProtocolIsolateDNS, Host: d.Host, Rule: d.Rule, Reason: d.Reason})
		}
		return iso.opts.DeniedRcode
	}
	if _, err := netip.ParseAddr(d.Host); err == nil {
		return dnsmessage.RCodeNameError // an address is no name
	}
	ctx, cancel := context.WithTimeout(iso.ctx, c.cfg.DialTimeout)
	defer cancel()
	if _, err := c.Resolve(ctx, d.Host); err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return dnsmessage.RCodeNameError
		}
		return dnsmessage.RCodeServerFailure
	}
	if q.Type != dnsmessage.TypeA && (q.Type != dnsmessage.TypeAAAA || !iso.opts.IPv6) {
		return dnsmessage.RCodeSuccess // the name exists, with no records of that type here
	}
	a4, a6, ok := iso.addrFor(d.Host)
	if !ok {
		return dnsmessage.RCodeServerFailure
	}
	h := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: isolatedTTL}
	var body dnsmessage.ResourceBody = &dnsmessage.AResource{A: a4.As4()}
	if q.Type == dnsmessage.TypeAAAA {
		body = &dnsmessage.AAAAResource{AAAA: a6.As16()}
	}
	*answers = append(*answers, dnsmessage.Resource{Header: h, Body: body})
	return dnsmessage.RCodeSuccess
}

// refused audits r, something of the namespace's refused before any dial.
func (iso *Isolated) refused(r AuditRecord) {
	r.Time, r.Decision = time.Now().UTC().Format(time.RFC3339Nano), socks.DecisionDeny
	iso.c.flows.record(r, time.Time{})
}

// addrFor is name's addresses in the pools, given out the first time it is
// asked for and kept while the namespace lives; false once the pools are
// spent.
func (iso *Isolated) addrFor(name string) (netip.Addr, netip.Addr, bool) {
	iso.mu.Lock()
	defer iso.mu.Unlock()
	a, ok := iso.names[name]
	if !ok {
		n := len(iso.names) + 1 // .0.0 is the pool's network address
		if n >= 1<<16-1 {
			return netip.Addr{}, netip.Addr{}, false
		}
		base := isolatedPool.Addr().As4()
		a = netip.AddrFrom4([4]byte{base[0], base[1], byte(n >> 8), byte(n)})
		iso.names[name], iso.addrs[a] = a, name
	}
	return a, v6of(a), true
}

// v6of is the IPv6 address with the same index as a, an IPv4 one of the
// pool, and v4of the other way round.
func v6of(a netip.Addr) netip.Addr {
	b, v4 := isolatedPool6.Addr().As16(), a.As4()
	b[14], b[15] = v4[2], v4[3]
	return netip.AddrFrom16(b)
}

func v4of(a netip.Addr) netip.Addr {
	b, v6 := isolatedPool.Addr().As4(), a.As16()
	b[2], b[3] = v6[14], v6[15]
	return netip.AddrFrom4(b)
}
