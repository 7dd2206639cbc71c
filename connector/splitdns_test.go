package connector_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// serveDNS answers A queries on the node's tailnet port 53 from records.
func serveDNS(t *testing.T, n *tailnettest.Node, records map[string]netip.Addr) {
	t.Helper()
	pc, err := n.ListenPacket("udp", n.IP4.String()+":53")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			nr, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:nr])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			resp := dnsmessage.Message{Header: dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true}, Questions: []dnsmessage.Question{q}}
			ip, ok := records[strings.ToLower(q.Name.String())]
			switch {
			case !ok:
				resp.RCode = dnsmessage.RCodeNameError
			case q.Type == dnsmessage.TypeA && ip.Is4():
				resp.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
					Body:   &dnsmessage.AResource{A: ip.As4()},
				}}
			}
			out, err := resp.Pack()
			if err == nil {
				pc.WriteTo(out, addr)
			}
		}
	}()
}

// TestSplitDNS: names under a split-DNS route with a tailnet nameserver
// resolve through the tailnet; an answer pointing at a host address is
// not followed; a route whose nameserver is off the tailnet is not used.
func TestSplitDNS(t *testing.T) {
	// Addresses are allocated in order: the first node is 100.64.0.1.
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{SplitDNS: map[string][]string{
		"corp.example":   {"100.64.0.1"},
		"public.example": {"192.0.2.53"},
	}})
	dns := ctl.StartNode(t, "dns", "tag:other")
	if dns.IP4 != netip.MustParseAddr("100.64.0.1") {
		t.Fatalf("dns node got %v, want 100.64.0.1", dns.IP4)
	}
	web, _ := webNode(t, ctl, "web2")
	serveDNS(t, dns, map[string]netip.Addr{
		"grafana.corp.example.": web.IP4,
		"sneaky.corp.example.":  netip.MustParseAddr("127.0.0.1"),
		"public.corp.example.":  netip.MustParseAddr("192.0.2.80"),
	})
	c := start(t, ctl, connector.Config{})
	waitSeen(t, web, c)
	waitSeen(t, dns, c)

	if got := get(t, c, "http://grafana.corp.example/"); got != "hello from web2" {
		t.Fatalf("split-DNS name: %q", got)
	}
	for _, host := range []string{"sneaky.corp.example", "public.corp.example"} {
		_, err := c.Dial(context.Background(), "tcp", host+":80")
		var re *connector.RouteError
		if !errors.As(err, &re) {
			t.Errorf("%s: %v, want a RouteError (answer points off the tailnet)", host, err)
		}
	}
	_, err := c.Dial(context.Background(), "tcp", "missing.corp.example:80")
	var de *net.DNSError
	if !errors.As(err, &de) {
		t.Errorf("missing name: %v, want DNSError", err)
	}
	_, err = c.Dial(context.Background(), "tcp", "www.public.example:80")
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "outside the tailnet") {
		t.Errorf("route with off-tailnet nameserver: %v, want a DNSError saying so", err)
	}
}
