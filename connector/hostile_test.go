package connector_test

// TestHostileCorpus throws a corpus of hostile destinations and requests at
// the proxy of a connector on the real test tailnet and checks, row by row,
// the exact answer (SOCKS5 reply bytes, HTTP status and body), that no
// service saw a connection it should not have, and what the audit log says.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// The nodes are not newProxyNet's pweb and psecret: Headscale renames a
// second node that joins under a name still registered (a closed tsnet
// node does not log out, and stays registered until the ephemeral
// inactivity timeout), so two tests of one binary must not both start a
// "pweb".
const (
	hcWeb    = "hweb"    // allowed: HTTP :80, TCP :22 and :8080 (ports the list does not allow)
	hcSecret = "hsecret" // not allowed: HTTP :80, TCP :443 and :22
)

// hcNet is the tailnet of the corpus: an allowed web node, a node outside
// the allowlist, a loopback canary in the test's own namespace, and a
// connector whose proxy allows
//
//	hweb.tailnet.test:80,443   exact name (nothing under it)
//	.corp.example:80           suffix rule for names that do not resolve
//	<hweb's IPv4>:80           a /32 prefix rule
type hcNet struct {
	c        *connector.Connector
	web      *tailnettest.Node
	secret   *tailnettest.Node
	webFQDN  string
	spec     string
	loopPort uint16 // the loopback canary's port, on 127.0.0.1 (the namespace has no IPv6)
	hits     map[string]func() int64
	audit    *syncBuffer
	dials    atomic.Int64 // client connections made, for their source addresses
}

func newHCNet(t *testing.T) *hcNet {
	t.Helper()
	ctl := tailnettest.Shared(t)
	h := &hcNet{audit: new(syncBuffer), hits: map[string]func() int64{}}

	h.web = hcStartNode(t, ctl, hcWeb, "tag:web")
	web := h.web.ServeHTTP(t, 80, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One request per connection, so that every allowed request is
		// one more accepted connection, even through the proxy's pool.
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "hello from hweb host=%s uri=%s", r.Host, r.RequestURI)
	}))
	h.hits["hweb:80"] = web.Load
	h.hits["hweb:22"] = h.web.ServeTCP(t, 22, nil).Load
	h.hits["hweb:8080"] = h.web.ServeTCP(t, 8080, nil).Load

	h.secret = hcStartNode(t, ctl, hcSecret, "tag:other")
	secret := h.secret.ServeHTTP(t, 80, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from hsecret")
	}))
	h.hits["hsecret:80"] = secret.Load
	h.hits["hsecret:443"] = h.secret.ServeTCP(t, 443, nil).Load
	h.hits["hsecret:22"] = h.secret.ServeTCP(t, 22, nil).Load

	// A canary on the namespace's loopback: a proxy that fell back to the
	// host network for 127.0.0.1, ::1, 0.0.0.0, :: or localhost would
	// reach it.
	var loop atomic.Int64
	ln4, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.loopPort = uint16(ln4.Addr().(*net.TCPAddr).Port)
	// No canary on [::1]: the test namespace has IPv6 turned off
	// (tailnettest.Main, so that netcheck does not wait for IPv6 STUN
	// answers), so nothing can bind or reach [::1] there. A proxy that
	// fell back to the host network for ::1 or :: would get a connect
	// error, and the corpus's rows for those hosts want the exact
	// allowlist reply (0x02, 403) instead, so it would still be caught.
	lns := []net.Listener{ln4}
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				loop.Add(1)
				c.Close()
			}
		}()
	}
	h.hits["loopback"] = loop.Load

	h.webFQDN = h.web.FQDN
	if h.webFQDN != hcWeb+"."+tailnettest.BaseDomain {
		t.Fatalf("web node is %q, want %s.%s (renamed by Headscale?)", h.webFQDN, hcWeb, tailnettest.BaseDomain)
	}
	h.spec = fmt.Sprintf("%s:80,443,.corp.example:80,%s:80", h.webFQDN, h.web.IP4)
	h.c = start(t, ctl, connector.Config{
		Allow:    dnsfilter.MustParse(h.spec),
		AuditLog: h.audit,
		Proxy: &connector.ProxyConfig{
			Listen: "127.0.0.1:0",
			// Short, so that the stalled-handshake rows end quickly.
			HandshakeTimeout: 1500 * time.Millisecond,
		},
	})
	waitSeen(t, h.web, h.c)
	waitSeen(t, h.secret, h.c)

	// The denied service is reachable on the tailnet (the ACL lets
	// everything through): only the allowlist stands between the proxy
	// and it, so its zero counts below mean something.
	h.secret.WaitPeer(t, h.web.IP4)
	hc := &http.Client{Transport: &http.Transport{DialContext: h.web.Dial}, Timeout: 20 * time.Second}
	if got := fetch(t, hc, "http://"+h.secret.IP4.String()+"/"); got != "hello from hsecret" {
		t.Fatalf("hsecret from hweb: %q", got)
	}
	if secret.Load() != 1 {
		t.Fatalf("hsecret saw %d connections, want 1", secret.Load())
	}
	return h
}

// hcStartNode starts a service node and, once it is closed, deletes it
// from Headscale, so that a rerun (-count=2) joins under the same name.
func hcStartNode(t *testing.T, ctl *tailnettest.Control, name, tag string) *tailnettest.Node {
	t.Helper()
	// Registered first, so it runs after the node's own Close.
	t.Cleanup(func() {
		if n, ok, err := ctl.FindNode(name); err == nil && ok {
			if _, err := ctl.Run("nodes", "delete", "-i", n.ID.String(), "--force"); err != nil {
				t.Logf("deleting %s: %v", name, err)
			}
		}
	})
	return ctl.StartNode(t, name, tag)
}

func (h *hcNet) addr() string { return h.c.ProxyAddr() }

func (h *hcNet) snapshot() map[string]int64 {
	m := make(map[string]int64, len(h.hits))
	for k, f := range h.hits {
		m[k] = f()
	}
	return m
}

// hcRow is one hostile (or control) exchange with the proxy.
type hcRow struct {
	cat, name string
	allow     int    // requests that must reach hweb:80, one connection each; nothing else may be reached
	deny      int    // policy denials it causes (SOCKS5 0x02, HTTP 403): audit decision "deny"
	rule      string // what those audit lines must name as the rule, or as the reason when no rule decided (hcIsReason)
	// inside: of the denials, those made inside a tunnel to hweb (the SNI
	// and Host check, vhost.go): the tunnel was dialed, so hweb saw a
	// connection (and no byte), and the record has hweb as resolved.
	inside int
	// run does the exchange and checks the answer. It returns the client
	// addresses it used, by which the audit lines are found.
	run func(t *testing.T, h *hcNet) []string
}

type hcKind int

const (
	hcAllow  hcKind = iota // allowed and reaches hweb: 0x00, 200
	hcDeny                 // denied by the allowlist: 0x02, 403 naming host and rule
	hcBad                  // a malformed host, denied before the allowlist sees it: 0x02, 403 naming it
	hcNoHost               // allowed by the list, not on the tailnet: 0x04, 502
)

type hcOutcome struct {
	kind   hcKind
	reason string // hcDeny: the rule (or, for no rule, the reason) named
}

func hcAllowed() hcOutcome         { return hcOutcome{kind: hcAllow} }
func hcDenied(r string) hcOutcome  { return hcOutcome{kind: hcDeny, reason: r} }
func hcMalformed() hcOutcome       { return hcOutcome{kind: hcBad} }
func hcUnresolvable() hcOutcome    { return hcOutcome{kind: hcNoHost} }
func hcSOCKSFail(code byte) []byte { return []byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0} }
func hcIsV6Literal(h string) bool  { return strings.Contains(h, ":") }

// hcDenyBody is the 403 body denying hp by rule r, or, when r is a reason
// (no rule decided), for that reason.
func hcDenyBody(hp, r string) string {
	if hcIsReason(r) {
		return fmt.Sprintf("tsconnect: %q not allowed: %s\n", hp, r)
	}
	return fmt.Sprintf("tsconnect: %q not allowed by allowlist rule: %s\n", hp, r)
}

// hcIsReason reports whether a denial's r is dnsfilter's reason for
// denying with no rule, rather than a rule.
func hcIsReason(r string) bool {
	return r == hcNoRule || r == hcNoCIDR || strings.HasPrefix(r, "ambiguous IP literal: ") || strings.HasPrefix(r, "malformed name: ")
}

// Reasons and rules the corpus expects in denials.
const (
	hcNoRule = "no rule matches"
	hcNoCIDR = "IP literal matches no CIDR rule"
	hcAmbig  = "ambiguous IP literal: write it as "
)

type hcCorpus struct {
	h    *hcNet
	rows []hcRow
}

func (b *hcCorpus) add(r hcRow) { b.rows = append(b.rows, r) }

// hostRows adds three rows for host:port: a SOCKS5 CONNECT with
// ATYP=domain carrying host as it is, an HTTP CONNECT and an absolute-form
// GET, both with a Host header naming the allowed web node.
func (b *hcCorpus) hostRows(cat, host string, port uint16, o hcOutcome) {
	label := fmt.Sprintf("%q:%d", host, port)
	b.socksHost(cat, "socks5 "+label, host, port, o)
	// What the proxy sees as the host for HTTP: with brackets for IPv6.
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	urlHost := host
	if hcIsV6Literal(host) {
		urlHost = "[" + host + "]"
	}
	if port != 80 {
		urlHost += ":" + strconv.Itoa(int(port))
	}
	checked := net.JoinHostPort(dnsfilter.Expand(host, tailnettest.BaseDomain), strconv.Itoa(int(port)))
	{
		raw := "CONNECT " + hp + " HTTP/1.1\r\nHost: " + b.h.webFQDN + ":80\r\n\r\n"
		switch o.kind {
		case hcAllow:
			b.httpAllow(cat, "CONNECT "+label, raw, "")
		case hcDeny:
			b.httpRow(cat, "CONNECT "+label, raw, 403, "="+hcDenyBody(checked, o.reason), o.reason)
		case hcBad:
			b.httpRow(cat, "CONNECT "+label, raw, 403, "~not allowed: malformed ", "")
		case hcNoHost:
			b.httpRow(cat, "CONNECT "+label, raw, 502, "~no such host on the tailnet", "")
		}
	}
	{
		raw := "GET http://" + urlHost + "/hostile HTTP/1.1\r\nHost: " + b.h.webFQDN + "\r\n\r\n"
		switch o.kind {
		case hcAllow:
			b.httpAllow(cat, "GET "+label, raw, urlHost)
		case hcDeny:
			b.httpRow(cat, "GET "+label, raw, 403, "="+hcDenyBody(checked, o.reason), o.reason)
		case hcBad:
			b.httpRow(cat, "GET "+label, raw, 403, "~not allowed: malformed ", "")
		case hcNoHost:
			b.httpRow(cat, "GET "+label, raw, 502, "~no such host on the tailnet", "")
		}
	}
}

// socksHost adds a SOCKS5 CONNECT to host (ATYP=domain) with outcome o.
func (b *hcCorpus) socksHost(cat, name, host string, port uint16, o hcOutcome) {
	req := hcDomainReq(1, host, port)
	switch o.kind {
	case hcAllow:
		b.socksAllow(cat, name, req)
	case hcDeny:
		b.socksRow(cat, name, req, hcSOCKSFail(0x02), o.reason)
	case hcBad:
		b.socksRow(cat, name, req, hcSOCKSFail(0x02), "")
	case hcNoHost:
		b.socksRow(cat, name, req, hcSOCKSFail(0x04), "")
	}
}

func hcDomainReq(cmd byte, host string, port uint16) []byte {
	if len(host) > 255 {
		panic("SOCKS5 domain longer than 255 bytes: " + host)
	}
	req := []byte{5, cmd, 0, 3, byte(len(host))}
	req = append(req, host...)
	return binary.BigEndian.AppendUint16(req, port)
}

func hcIPReq(cmd byte, ip netip.Addr, port uint16) []byte {
	req := []byte{5, cmd, 0}
	if ip.Is4() {
		req = append(req, 1)
	} else {
		req = append(req, 4)
	}
	req = append(req, ip.AsSlice()...)
	return binary.BigEndian.AppendUint16(req, port)
}

// socksRow: greet, send req, and expect exactly want and then the end of
// the connection (want nil: closed without a reply).
func (b *hcCorpus) socksRow(cat, name string, req, want []byte, rule string) {
	deny := 0
	if len(want) > 1 && want[1] == 0x02 {
		deny = 1
	}
	b.add(hcRow{cat: cat, name: name, deny: deny, rule: rule, run: func(t *testing.T, h *hcNet) []string {
		got, client := h.socksExchange(t, req, false)
		if string(got) != string(want) {
			t.Errorf("SOCKS5 % x\ngot  % x\nwant % x", req, got, want)
		}
		return []string{client}
	}})
}

// socksTruncated: greet, send a partial request and half-close: the proxy
// must close without a reply.
func (b *hcCorpus) socksTruncated(cat, name string, req []byte) {
	b.add(hcRow{cat: cat, name: name, run: func(t *testing.T, h *hcNet) []string {
		got, client := h.socksExchange(t, req, true)
		if len(got) != 0 {
			t.Errorf("SOCKS5 % x, half-closed: got % x, want the connection closed without a reply", req, got)
		}
		return []string{client}
	}})
}

// socksRaw: send bytes as they are (no greeting of ours), half-close if
// asked, and expect exactly want before the proxy closes.
func (b *hcCorpus) socksRaw(cat, name string, send []byte, halfClose bool, want []byte) {
	deny, rule := 0, ""
	if bytes.HasSuffix(want, hcSOCKSFail(0x02)) {
		deny, rule = 1, hcNoRule
	}
	b.add(hcRow{cat: cat, name: name, deny: deny, rule: rule, run: func(t *testing.T, h *hcNet) []string {
		got, client := h.rawExchange(t, send, halfClose)
		if string(got) != string(want) {
			t.Errorf("sent % x\ngot  % x\nwant % x", send, got, want)
		}
		return []string{client}
	}})
}

// socksAllow: the CONNECT must succeed and carry an HTTP request to hweb.
func (b *hcCorpus) socksAllow(cat, name string, req []byte) {
	b.add(hcRow{cat: cat, name: name, allow: 1, run: func(t *testing.T, h *hcNet) []string {
		return []string{h.socksTunnel(t, req)}
	}})
}

// httpRow: send raw, expect status and a body that is exactly body ("="
// prefix), contains it ("~" prefix) or starts with it.
func (b *hcCorpus) httpRow(cat, name, raw string, status int, body, rule string) {
	deny := 0
	if status == 403 {
		deny = 1
	}
	b.add(hcRow{cat: cat, name: name, deny: deny, rule: rule, run: func(t *testing.T, h *hcNet) []string {
		rs, client := h.httpExchange(t, raw, 1)
		hcCheckResp(t, raw, rs[0], status, body)
		return []string{client}
	}})
}

func hcCheckResp(t *testing.T, raw string, r hcResp, status int, body string) {
	t.Helper()
	ok := r.status == status
	switch {
	case strings.HasPrefix(body, "="):
		ok = ok && r.body == body[1:]
	case strings.HasPrefix(body, "~"):
		ok = ok && strings.Contains(r.body, body[1:])
	default:
		ok = ok && strings.HasPrefix(r.body, body)
	}
	if !ok {
		t.Errorf("%q\ngot  %d %q\nwant %d %q", raw, r.status, r.body, status, body)
	}
}

// httpAllow: the request (CONNECT or absolute-form) must reach hweb; for a
// GET, the upstream Host header must be wantHost when it is set.
func (b *hcCorpus) httpAllow(cat, name, raw, wantHost string) {
	b.add(hcRow{cat: cat, name: name, allow: 1, run: func(t *testing.T, h *hcNet) []string {
		rs, client := h.httpExchange(t, raw, 1)
		r := rs[0]
		if r.status != 200 || !strings.HasPrefix(r.body, "hello from hweb ") {
			t.Errorf("%q: got %d %q, want 200 from hweb", raw, r.status, r.body)
		}
		if wantHost != "" && !strings.Contains(r.body, " host="+wantHost+" ") {
			t.Errorf("%q: upstream saw %q, want Host %s", raw, r.body, wantHost)
		}
		return []string{client}
	}})
}

const hcTimeout = 15 * time.Second

// dial connects to the proxy from a loopback address of its own
// (127.1.x.y), so that each connection's audit line can be told apart: the
// kernel reuses source ports within the corpus.
func (h *hcNet) dial(t *testing.T) net.Conn {
	t.Helper()
	n := h.dials.Add(1)
	if n > 0xffff {
		t.Fatal("out of client addresses")
	}
	src := netip.AddrFrom4([4]byte{127, 1, byte(n >> 8), byte(n)})
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	c, err := d.Dial("tcp", h.addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(hcTimeout))
	return c
}

// readToClose reads until the proxy closes the connection. A reset counts
// as closed; a timeout is an error.
func hcReadToClose(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("proxy did not close the connection (read % x): %v", b, err)
	}
	return b
}

// socksExchange greets the proxy (no authentication), sends req (and
// half-closes if asked) and returns everything the proxy sends back until
// it closes.
func (h *hcNet) socksExchange(t *testing.T, req []byte, halfClose bool) ([]byte, string) {
	t.Helper()
	c := h.dial(t)
	defer c.Close()
	client := c.LocalAddr().String()
	c.Write([]byte{5, 1, 0})
	var greet [2]byte
	if _, err := io.ReadFull(c, greet[:]); err != nil || greet != [2]byte{5, 0} {
		t.Errorf("greeting: % x %v", greet, err)
		return nil, client
	}
	c.Write(req)
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	return hcReadToClose(t, c), client
}

// rawExchange sends send and returns everything the proxy answers.
func (h *hcNet) rawExchange(t *testing.T, send []byte, halfClose bool) ([]byte, string) {
	t.Helper()
	c := h.dial(t)
	defer c.Close()
	c.Write(send)
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	return hcReadToClose(t, c), c.LocalAddr().String()
}

// socksTunnel expects req to be granted and fetches from hweb through it.
func (h *hcNet) socksTunnel(t *testing.T, req []byte) string {
	t.Helper()
	c := h.dial(t)
	defer c.Close()
	client := c.LocalAddr().String()
	c.Write([]byte{5, 1, 0})
	br := bufio.NewReader(c)
	var rep [4]byte
	if _, err := io.ReadFull(br, rep[:2]); err != nil || rep[0] != 5 || rep[1] != 0 {
		t.Errorf("greeting: % x %v", rep[:2], err)
		return client
	}
	c.Write(req)
	if _, err := io.ReadFull(br, rep[:]); err != nil || rep[1] != 0 {
		rest, _ := io.ReadAll(br)
		t.Errorf("SOCKS5 % x: reply % x % x (%v), want 0x00", req, rep, rest, err)
		return client
	}
	n := map[byte]int{1: 4, 4: 16}[rep[3]]
	if n == 0 {
		t.Errorf("reply with address type %d", rep[3])
		return client
	}
	if _, err := io.ReadFull(br, make([]byte, n+2)); err != nil {
		t.Errorf("reply address: %v", err)
		return client
	}
	io.WriteString(c, "GET /via-socks HTTP/1.1\r\nHost: "+h.webFQDN+"\r\n\r\n")
	if got := string(hcReadToClose(t, br)); !strings.Contains(got, "hello from hweb ") {
		t.Errorf("through the tunnel: %q", got)
	}
	return client
}

type hcResp struct {
	status int // 0: the connection ended without a response
	body   string
}

// httpExchange sends raw to the proxy and reads n responses (fewer if the
// connection ends). After a 200 to a CONNECT it fetches from hweb through
// the tunnel, and that response's body is the body returned.
func (h *hcNet) httpExchange(t *testing.T, raw string, n int) ([]hcResp, string) {
	t.Helper()
	c := h.dial(t)
	defer c.Close()
	client := c.LocalAddr().String()
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	var out []hcResp
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			out = append(out, hcResp{0, err.Error()})
			break
		}
		if resp.StatusCode == 200 && strings.HasPrefix(raw, "CONNECT ") {
			io.WriteString(c, "GET /via-connect HTTP/1.1\r\nHost: "+h.webFQDN+"\r\n\r\n")
			tr, err := http.ReadResponse(br, nil)
			if err != nil {
				out = append(out, hcResp{200, "tunnel: " + err.Error()})
				break
			}
			b, _ := io.ReadAll(tr.Body)
			out = append(out, hcResp{200, string(b)})
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, hcResp{resp.StatusCode, string(b)})
	}
	for len(out) < n {
		out = append(out, hcResp{0, "no response"})
	}
	return out, client
}

// corpus builds the rows. Row names say what is sent; the category is the
// first part of the subtest name.
func (h *hcNet) corpus(t *testing.T) []hcRow {
	b := &hcCorpus{h: h}
	web, webIP4, webIP6 := h.webFQDN, h.web.IP4, h.web.IP6
	secretFQDN := h.secret.FQDN
	sec4, sec6 := h.secret.IP4, h.secret.IP6
	st, err := h.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	self4 := st.IPv4
	lp := h.loopPort
	_, proxyPortStr, _ := net.SplitHostPort(h.addr())
	proxyPort, _ := strconv.Atoi(proxyPortStr)
	w4 := webIP4.As4()
	webRule := web + ":80,443"
	webIPRule := webIP4.String() + ":80"
	corpRule := ".corp.example:80"

	// Control: legitimate requests get through (so the zero counts below
	// can fail).
	b.socksHost("control", "socks5 hweb", hcWeb, 80, hcAllowed())
	b.hostRows("control", web, 80, hcAllowed())

	// IP literal forms.
	const ip = "ip-literal"
	for _, host := range []string{
		"0x7f.0.0.1", "0x7f000001", "0X7F000001", "0x7f.1", "0177.0.0.1", "0177.0000.0000.0001",
		"017700000001", "2130706433", "127.1", "127.0.1", "127.0.0.1.",
	} {
		b.hostRows(ip, host, lp, hcDenied(hcAmbig+"127.0.0.1"))
	}
	b.hostRows(ip, "10.1", 80, hcDenied(hcAmbig+"10.0.0.1"))
	b.hostRows(ip, "0", lp, hcDenied(hcAmbig+"0.0.0.0"))
	b.hostRows(ip, "100.064.0.1", 80, hcDenied(hcAmbig+"100.52.0.1"))
	// The allowed address itself, written so a libc resolver would read it
	// as that address: still denied, never converted.
	for _, host := range []string{
		fmt.Sprintf("0x%x.0x%x.0x%x.0x%x", w4[0], w4[1], w4[2], w4[3]),
		fmt.Sprintf("0%o.0%o.0%o.0%o", w4[0], w4[1], w4[2], w4[3]),
		strconv.FormatUint(uint64(binary.BigEndian.Uint32(w4[:])), 10),
		fmt.Sprintf("%d.%d.%d", w4[0], w4[1], int(w4[2])<<8|int(w4[3])),
		webIP4.String() + ".",
	} {
		b.hostRows(ip, host, 80, hcDenied(hcAmbig+webIP4.String()))
	}
	for _, host := range []string{
		"127.0.0.1", "127.255.255.254", "::1", "0.0.0.0", "::",
		"::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:0.0.0.0", "::127.0.0.1", "64:ff9b::7f00:1",
	} {
		b.hostRows(ip, host, lp, hcDenied(hcNoCIDR))
	}
	b.hostRows(ip, "127.0.0.1", uint16(proxyPort), hcDenied(hcNoCIDR)) // the proxy itself
	for _, host := range []string{"localhost", "localhost.", "LOCALHOST", "localhost.localdomain", "ip6-localhost"} {
		b.hostRows(ip, host, lp, hcDenied(hcNoRule))
	}
	// Zones: malformed, denied before the allowlist.
	for _, host := range []string{"fe80::1%eth0", "fe80::1%25lo", "::1%lo", "fe80::1%"} {
		b.socksHost(ip, fmt.Sprintf("socks5 %q:80", host), host, 80, hcMalformed())
	}
	b.httpRow(ip, "CONNECT [fe80::1%25eth0]:80", "CONNECT [fe80::1%25eth0]:80 HTTP/1.1\r\nHost: "+web+"\r\n\r\n", 403, "~not allowed: malformed ", "")
	b.httpRow(ip, "CONNECT [fe80::1%eth0]:80", "CONNECT [fe80::1%eth0]:80 HTTP/1.1\r\nHost: "+web+"\r\n\r\n", 403, "~not allowed: malformed ", "")
	b.httpRow(ip, "GET http://[fe80::1%25eth0]/", "GET http://[fe80::1%25eth0]/ HTTP/1.1\r\nHost: "+web+"\r\n\r\n", 403, "~not allowed: malformed ", "")
	b.httpRow(ip, "GET http://[::1%25lo]/", "GET http://[::1%25lo]/ HTTP/1.1\r\nHost: "+web+"\r\n\r\n", 403, "~not allowed: malformed ", "")
	// Link-local, metadata, Tailscale's own 100.100.100.100, private and
	// public ranges, the denied service's and the connector's own tailnet
	// addresses, and the allowed node's IPv6 (only its IPv4 is listed).
	for _, host := range []string{
		"169.254.169.254", "169.254.170.2", "fd00:ec2::254", "fe80::a9fe:a9fe",
		"100.100.100.100", "fd7a:115c:a1e0::53", "10.0.0.1", "192.168.1.1", "172.16.0.1",
		"100.64.0.0", "1.1.1.1", "255.255.255.255", "224.0.0.1",
		sec4.String(), sec6.String(), "::ffff:" + sec4.String(), self4.String(), webIP6.String(),
	} {
		b.hostRows(ip, host, 80, hcDenied(hcNoCIDR))
	}
	for _, host := range []string{"metadata.google.internal", "metadata", "instance-data.ec2.internal", "169.254.169.254.nip.io"} {
		b.hostRows(ip, host, 80, hcDenied(hcNoRule))
	}
	// The allowed address, plainly and IPv4-mapped (unmapped before
	// matching, as the README says): allowed.
	b.hostRows(ip, webIP4.String(), 80, hcAllowed())
	b.hostRows(ip, "::ffff:"+webIP4.String(), 80, hcAllowed())

	// Names.
	const nm = "name"
	for _, host := range []string{
		"evil" + web, "evil-" + web, "x." + web, "a.b." + web, web + ".evil.example", web + ".corp.example.evil.example",
		"hweb.tailnet", "hweb.tailnet.test.tailnet.test", "hweb.", secretFQDN, hcSecret, "HSECRET", "HSECRET.TAILNET.TEST.",
		"evilcorp.example", "corp.example", "CORP.EXAMPLE", "a.corp.example.evil.example", "a.corp-example", "_" + web,
		"xn--hwb-sdd." + tailnettest.BaseDomain, "XN--HWB-SDD." + tailnettest.BaseDomain, // punycode of the homograph below
		// Homographs: well-formed international names, checked as their
		// xn-- form, which no rule names.
		"hwеb." + tailnettest.BaseDomain, // Cyrillic е
		"һweb." + tailnettest.BaseDomain, // Cyrillic һ
	} {
		b.hostRows(nm, host, 80, hcDenied(hcNoRule))
	}
	// Malformed to the allowlist, though made only of letters, digits,
	// '-', '_' and dots.
	b.hostRows(nm, "-"+web, 80, hcDenied("malformed name: label starts or ends with '-'"))
	b.hostRows(nm, "hweb-.tailnet.test", 80, hcDenied("malformed name: label starts or ends with '-'"))
	b.hostRows(nm, "xn--99999999999.tailnet.test", 80, hcDenied("malformed name: label starting xn-- is not valid punycode"))
	b.hostRows(nm, "hweb.tailnet.123", 80, hcDenied("ambiguous IP literal: numeric last label"))
	// The same name in other case, with one trailing dot: allowed.
	for _, host := range []string{"HWEB", "HWEB.TAILNET.TEST", "hWeB.TaIlNeT.tEsT.", web + "."} {
		b.hostRows(nm, host, 80, hcAllowed())
	}
	// Under the suffix rule: allowed by the list, but no such name on the
	// tailnet, and the host resolver is never asked.
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 48) + ".corp.example"
	if len(name253) != 253 {
		t.Fatalf("name253 has %d bytes", len(name253))
	}
	for _, host := range []string{"a.corp.example", "A.CORP.EXAMPLE", "a.b.corp.example.", label63 + ".corp.example", name253, name253 + "."} {
		b.hostRows(nm, host, 80, hcUnresolvable())
	}
	// Malformed: refused before the allowlist.
	for _, host := range []string{
		web + "..", web + "...", "hweb..", "a..corp.example", "." + web, "..", ".",
		strings.Repeat("a", 64) + ".corp.example", "x." + name253, "*.corp.example", "*",
		"ｈｗｅｂ." + tailnettest.BaseDomain, // fullwidth
		"hweb。tailnet.test", "hweb．tailnet.test", "hweb｡tailnet.test", web + "。",
		"hweb\u200b.tailnet.test", "h\u00adweb.tailnet.test", "\ufeff" + web, "hweb\u200d.tailnet.test",
		"hweb!.tailnet.test", "hweb$.tailnet.test",
		"hweb,hsecret", "hweb;.tailnet.test", "hweb\".tailnet.test", "hweb'.tailnet.test",
	} {
		b.hostRows(nm, host, 80, hcMalformed())
	}
	// Bytes that cannot be written into an HTTP request line: SOCKS5 only.
	for _, host := range []string{
		"", "hweb\x00", web + "\x00.evil.example", "hsecret\x00" + web, web + "\r\nX-Injected: 1", "hweb\n", "hweb\t",
		"hweb ", "hweb " + tailnettest.BaseDomain, " " + web, "hweb%2etailnet.test", "hsecret%00", "hweb%",
		"hsecret@" + web, web + "@hsecret", web + "/hsecret", "hsecret/." + web, "hsecret\\." + web,
		"hweb#.tailnet.test", "hweb?.tailnet.test", "hweb\xff.tailnet.test", "hweb\x7f",
		"hweb:80", web + ":80", "[" + web + "]", "[" + webIP4.String() + "]",
	} {
		b.socksHost(nm, fmt.Sprintf("socks5 %q:80", host), host, 80, hcMalformed())
	}

	// HTTP.
	const hp = "http"
	req := func(line string, headers ...string) string {
		return line + "\r\n" + strings.Join(append(headers, ""), "\r\n") + "\r\n"
	}
	hostWeb := "Host: " + web
	goBad := "400 Bad Request" // answered by net/http before the proxy's handler
	noVersion := "tsconnect: malformed request line: no HTTP version (a line break in the target?)\n"
	secretDenied := func(port int) string {
		return "=" + hcDenyBody(net.JoinHostPort(secretFQDN, strconv.Itoa(port)), hcNoRule)
	}
	b.httpRow(hp, "CONNECT CRLF injection in target", req("CONNECT hsecret:80\r\nHost: "+web+":80 HTTP/1.1"), 400, noVersion, "")
	b.httpRow(hp, "CONNECT CRLF injection after port", req("CONNECT "+web+":80\r\nX: hsecret:80 HTTP/1.1"), 400, noVersion, "")
	b.httpRow(hp, "CONNECT LF injection", "CONNECT hsecret:80\nHost: "+web+":80 HTTP/1.1\r\n\r\n", 400, noVersion, "")
	b.httpRow(hp, "CONNECT escaped CRLF", req("CONNECT hsecret%0d%0a:80 HTTP/1.1", hostWeb+":80"), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "CONNECT space in target", req("CONNECT hsecret :80 HTTP/1.1", hostWeb+":80"), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "CONNECT denied target, allowed Host", req("CONNECT hsecret:80 HTTP/1.1", hostWeb+":80"), 403, secretDenied(80), hcNoRule)
	b.httpRow(hp, "CONNECT denied target:443, allowed Host", req("CONNECT hsecret:443 HTTP/1.1", hostWeb+":443"), 403, secretDenied(443), hcNoRule)
	b.httpAllow(hp, "CONNECT allowed target, denied Host", req("CONNECT hweb:80 HTTP/1.1", "Host: hsecret:80"), "")
	b.httpRow(hp, "CONNECT userinfo", req("CONNECT hweb@hsecret:80 HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "CONNECT userinfo reversed", req("CONNECT hsecret@hweb:80 HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "CONNECT absolute URL", req("CONNECT http://hweb:80 HTTP/1.1", hostWeb), 400, "tsconnect: bad CONNECT target", "")
	b.httpRow(hp, "CONNECT path", req("CONNECT /hweb:80 HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "CONNECT trailing path", req("CONNECT hweb:80/x HTTP/1.1", hostWeb), 400, "tsconnect: bad CONNECT target", "")
	for _, target := range []string{"hweb", web, "hweb:", "hweb:0", "hweb:00", "hweb:65536", "hweb:99999", ":80", "[::1]"} {
		b.httpRow(hp, "CONNECT "+target, req("CONNECT "+target+" HTTP/1.1", hostWeb), 400, "tsconnect: bad CONNECT target", "")
	}
	// Targets whose port net/http's URL parser already rejects (the proxy
	// answers them itself), and brackets around what is not IPv6.
	for _, target := range []string{"hweb:-1", "hweb:+80", "hweb:0x50", "hweb:80:80", "[::1]80"} {
		b.httpRow(hp, "CONNECT "+target, req("CONNECT "+target+" HTTP/1.1", hostWeb), 400, "tsconnect: bad CONNECT target", "")
	}
	for _, target := range []string{"[" + webIP4.String() + "]:80", "[" + web + "]:80"} {
		b.httpRow(hp, "CONNECT "+target, req("CONNECT "+target+" HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	}
	b.httpRow(hp, "GET denied URL host, allowed Host header", req("GET http://hsecret/ HTTP/1.1", hostWeb), 403, secretDenied(80), hcNoRule)
	b.httpRow(hp, "GET denied URL host, HTTP/1.0, no Host", req("GET http://hsecret/ HTTP/1.0"), 403, secretDenied(80), hcNoRule)
	b.httpRow(hp, "GET upper-case scheme", req("GET HTTP://hsecret/ HTTP/1.1", hostWeb), 403, secretDenied(80), hcNoRule)
	b.httpAllow(hp, "GET allowed URL host, denied Host header", req("GET http://hweb/x HTTP/1.1", "Host: hsecret"), "hweb")
	b.httpAllow(hp, "GET allowed URL host, denied X-Forwarded-Host", req("GET http://hweb/x HTTP/1.1", hostWeb, "X-Forwarded-Host: hsecret", "Forwarded: host=hsecret"), "hweb")
	b.httpRow(hp, "GET two Host headers", req("GET http://hweb/ HTTP/1.1", hostWeb, "Host: hsecret"), 400, goBad, "")
	b.httpRow(hp, "GET userinfo names allowed, host denied", req("GET http://hweb@hsecret/ HTTP/1.1", hostWeb), 403, secretDenied(80), hcNoRule)
	b.httpRow(hp, "GET userinfo with port, host denied", req("GET http://"+web+":80@"+secretFQDN+"/ HTTP/1.1", hostWeb), 403, secretDenied(80), hcNoRule)
	b.httpAllow(hp, "GET userinfo names denied, host allowed", req("GET http://hsecret@hweb/ HTTP/1.1", "Host: hsecret"), "hweb")
	b.httpRow(hp, "GET fragment before @ (psecret#@pweb)", req("GET http://hsecret#@hweb/ HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "GET fragment before @ (pweb#@psecret)", req("GET http://hweb#@hsecret/ HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "GET backslash before @", req("GET http://hsecret\\@hweb/ HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "GET fragment after path names allowed", req("GET http://hsecret/#@hweb HTTP/1.1", hostWeb), 403, secretDenied(80), hcNoRule)
	b.httpAllow(hp, "GET fragment after path names denied", req("GET http://hweb/#@hsecret HTTP/1.1", hostWeb), "hweb")
	b.httpRow(hp, "GET query names allowed", req("GET http://hsecret?@hweb/ HTTP/1.1", hostWeb), 403, secretDenied(80), hcNoRule)
	b.httpAllow(hp, "GET query names denied", req("GET http://hweb?@hsecret/ HTTP/1.1", hostWeb), "hweb")
	b.httpRow(hp, "GET percent-encoded host", req("GET http://hs%65cret/ HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "GET percent-encoded dot", req("GET http://hweb%2ehsecret/ HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "GET percent-encoded NUL", req("GET http://hweb%00.tailnet.test/ HTTP/1.1", hostWeb), 403, "~not allowed: malformed ", "")
	b.httpRow(hp, "origin-form GET / with Host: hweb", req("GET / HTTP/1.1", hostWeb), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "origin-form GET /x with Host: hsecret", req("GET /x HTTP/1.1", "Host: hsecret"), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "origin-form POST with Host: hweb", req("POST /x HTTP/1.1", hostWeb, "Content-Length: 0"), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "network-path GET //hsecret/", req("GET //hsecret/ HTTP/1.1", hostWeb), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "GET opaque hsecret:80", req("GET hsecret:80 HTTP/1.1", hostWeb), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "GET http:hsecret/", req("GET http:hsecret/ HTTP/1.1", hostWeb), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "GET http:///hsecret/", req("GET http:///hsecret/ HTTP/1.1", hostWeb), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "GET https:// URL", req("GET https://hweb/ HTTP/1.1", hostWeb), 400, "tsconnect: https:// URLs are not forwarded", "")
	b.httpRow(hp, "GET ftp:// URL", req("GET ftp://hweb/ HTTP/1.1", hostWeb), 400, "tsconnect: only http:// URLs are forwarded", "")
	b.httpRow(hp, "GET port 0", req("GET http://hweb:0/ HTTP/1.1", hostWeb), 400, "tsconnect: bad port", "")
	b.httpRow(hp, "GET port 65536", req("GET http://hweb:65536/ HTTP/1.1", hostWeb), 400, "tsconnect: bad port", "")
	b.httpRow(hp, "HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	b.httpRow(hp, "OPTIONS * (for the proxy itself)", req("OPTIONS * HTTP/1.1", hostWeb), 400, "~not a web server", "")
	b.httpRow(hp, "TLS to the proxy", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400, "~use http:// in the proxy URL", "")
	b.httpRow(hp, "stalled request header", "CONNECT hsecret:80 HTTP/1.1\r\nHost: hsecret", 0, "", "")
	b.httpRow(hp, "lower-case connect (not CONNECT)", req("connect hsecret:80 HTTP/1.1", hostWeb), 400, "tsconnect: this is an HTTP proxy, not a web server", "")
	// Bytes after a granted CONNECT header belong to the tunnel, never
	// acted on by the proxy: a second CONNECT, to hsecret, is what the
	// tunnel carries, and the check inside tunnels refuses it (hweb's
	// server, which answers any method, would have answered it).
	b.add(hcRow{cat: hp, name: "CONNECT hweb, then CONNECT hsecret inside the tunnel", deny: 1, inside: 1, rule: "CONNECT inside a tunnel",
		run: func(t *testing.T, h *hcNet) []string {
			raw := req("CONNECT hweb:80 HTTP/1.1", "Host: hsecret:80") + req("CONNECT hsecret:80 HTTP/1.1", "Host: hsecret:80")
			rs, client := h.httpExchange(t, raw, 1)
			// status is the proxy's 200 to the outer CONNECT; the body, the
			// connector's 403 to the inner one.
			if rs[0].status != 200 || rs[0].body != "tsconnect: HTTP: CONNECT inside a tunnel\n" {
				t.Errorf("got %d %q, want the connector's 403 for a CONNECT inside the tunnel", rs[0].status, rs[0].body)
			}
			return []string{client}
		}})
	// Request smuggling: net/http reads the chunked body (Transfer-Encoding
	// wins over Content-Length), so what follows is a second request, and
	// it is checked like the first.
	b.add(hcRow{cat: hp, name: "smuggled request after a chunked body", allow: 1, deny: 1, rule: hcNoRule,
		run: func(t *testing.T, h *hcNet) []string {
			raw := req("POST http://hweb/ HTTP/1.1", hostWeb, "Content-Length: 40", "Transfer-Encoding: chunked") + "0\r\n\r\n" +
				req("GET http://hsecret/smuggled HTTP/1.1", hostWeb)
			rs, client := h.httpExchange(t, raw, 2)
			if rs[0].status != 200 || !strings.HasPrefix(rs[0].body, "hello from hweb ") {
				t.Errorf("first: %d %q, want 200 from hweb", rs[0].status, rs[0].body)
			}
			hcCheckResp(t, raw, rs[1], 403, secretDenied(80))
			return []string{client}
		}})
	b.add(hcRow{cat: hp, name: "keep-alive: allowed GET, then a denied one", allow: 1, deny: 1, rule: hcNoRule,
		run: func(t *testing.T, h *hcNet) []string {
			raw := req("GET http://hweb/first HTTP/1.1", hostWeb) + req("GET http://hsecret/second HTTP/1.1", hostWeb)
			rs, client := h.httpExchange(t, raw, 2)
			if rs[0].status != 200 || !strings.HasPrefix(rs[0].body, "hello from hweb ") {
				t.Errorf("first: %d %q, want 200 from hweb", rs[0].status, rs[0].body)
			}
			hcCheckResp(t, raw, rs[1], 403, secretDenied(80))
			return []string{client}
		}})

	// SOCKS5 specific.
	const sk = "socks5"
	fail := hcSOCKSFail
	for _, a := range []netip.Addr{
		sec4, sec6, netip.AddrFrom16(sec4.As16()), self4, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("100.100.100.100"), netip.MustParseAddr("10.0.0.1"),
		netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("::1"), netip.MustParseAddr("::"),
		netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("::ffff:127.0.0.1"),
		netip.MustParseAddr("::ffff:169.254.169.254"), webIP6,
	} {
		port := uint16(80)
		if a.Unmap().IsLoopback() || a.IsUnspecified() || a.Unmap().IsUnspecified() {
			port = lp
		}
		b.socksRow(sk, fmt.Sprintf("ATYP=%d %v:%d", map[bool]int{true: 1, false: 4}[a.Is4()], a, port), hcIPReq(1, a, port), fail(0x02), hcNoCIDR)
	}
	b.socksAllow(sk, "ATYP=1 hweb's IPv4", hcIPReq(1, webIP4, 80))
	b.socksAllow(sk, "ATYP=4 hweb's IPv4, mapped", hcIPReq(1, netip.AddrFrom16(webIP4.As16()), 80))
	b.socksRow(sk, "ATYP=3 carrying 127.0.0.1", hcDomainReq(1, "127.0.0.1", lp), fail(0x02), hcNoCIDR)
	b.socksRow(sk, "ATYP=3 carrying hsecret's IPv4", hcDomainReq(1, sec4.String(), 80), fail(0x02), hcNoCIDR)
	b.socksRow(sk, "ATYP=3 carrying [::1]", hcDomainReq(1, "[::1]", lp), fail(0x02), "")
	b.socksRow(sk, "ATYP=3 length 0", hcDomainReq(1, "", 80), fail(0x02), "")
	b.socksRow(sk, "ATYP=3 length 255", hcDomainReq(1, strings.Repeat("a", 255), 80), fail(0x02), "")
	b.socksRow(sk, "ATYP=3 hsecret, reserved byte 0xff", append([]byte{5, 1, 0xff}, hcDomainReq(1, hcSecret, 80)[3:]...), fail(0x02), hcNoRule)
	for _, atyp := range []byte{0, 2, 5, 0xff} {
		b.socksRow(sk, fmt.Sprintf("ATYP=%#x", atyp), []byte{5, 1, 0, atyp, 127, 0, 0, 1, 0, 80}, fail(0x08), "")
	}
	b.socksRow(sk, "BIND hweb", hcDomainReq(2, hcWeb, 80), fail(0x07), "")
	b.socksRow(sk, "BIND hsecret's IPv4", hcIPReq(2, sec4, 80), fail(0x07), "")
	b.socksRow(sk, "UDP ASSOCIATE 0.0.0.0:0", hcIPReq(3, netip.IPv4Unspecified(), 0), fail(0x07), "")
	b.socksRow(sk, "UDP ASSOCIATE hweb", hcDomainReq(3, web, 80), fail(0x07), "")
	b.socksRow(sk, "command 0x00", hcDomainReq(0, web, 80), fail(0x07), "")
	b.socksRow(sk, "command 0xff", hcDomainReq(0xff, web, 80), fail(0x07), "")
	b.socksRow(sk, "CONNECT hweb port 0", hcDomainReq(1, web, 0), fail(0x01), "")
	b.socksRow(sk, "request version 4", []byte{4, 1, 0, 1, 127, 0, 0, 1, 0, 80}, nil, "")
	b.socksRow(sk, "request version 0", []byte{0, 1, 0, 3, 4, 'h', 'w', 'e', 'b', 0, 80}, nil, "")
	b.socksTruncated(sk, "truncated request header", []byte{5, 1, 0})
	b.socksTruncated(sk, "truncated IPv4", []byte{5, 1, 0, 1, 127, 0})
	b.socksTruncated(sk, "truncated IPv6", []byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0})
	b.socksTruncated(sk, "truncated domain", []byte{5, 1, 0, 3, 10, 'h', 'w', 'e', 'b'})
	b.socksTruncated(sk, "domain without port", append([]byte{5, 1, 0, 3, 4}, "hweb"...))
	b.socksRow(sk, "pipelined second CONNECT ignored", append(hcDomainReq(1, hcSecret, 80), hcDomainReq(1, hcWeb, 80)...), fail(0x02), hcNoRule)
	// The request above is sent after the greeting reply. These send
	// their own greeting, half-close unless stalled, and expect exact
	// bytes.
	garbage := make([]byte, 255)
	for i := range garbage {
		garbage[i] = byte(0x80 + i%0x7f)
	}
	b.socksRaw(sk, "greeting offers no methods", []byte{5, 0}, true, []byte{5, 0xff})
	b.socksRaw(sk, "greeting offers only username/password", []byte{5, 1, 2}, true, []byte{5, 0xff})
	b.socksRaw(sk, "greeting offers GSSAPI and 0xff", []byte{5, 2, 1, 0xff}, true, []byte{5, 0xff})
	b.socksRaw(sk, "greeting of 255 garbage methods", append([]byte{5, 0xff}, garbage...), true, []byte{5, 0xff})
	b.socksRaw(sk, "greeting truncated after version", []byte{5}, true, nil)
	b.socksRaw(sk, "greeting truncated methods", []byte{5, 3, 0}, true, nil)
	b.socksRaw(sk, "greeting and CONNECT hsecret in one write", append([]byte{5, 1, 0}, hcDomainReq(1, hcSecret, 80)...), true,
		append([]byte{5, 0}, fail(0x02)...))
	b.socksRaw(sk, "greeting, then nothing (stalled)", []byte{5, 1, 0}, false, []byte{5, 0})
	b.socksRaw(sk, "half a greeting (stalled)", []byte{5, 2}, false, nil)
	b.socksRaw(sk, "SOCKS4 CONNECT hsecret", append([]byte{4, 1, 0, 80}, append(sec4.AsSlice(), 'u', 0)...), false, []byte{0, 0x5b, 0, 0, 0, 0, 0, 0})
	b.socksRaw(sk, "SOCKS4a CONNECT hsecret", append([]byte{4, 1, 0, 80, 0, 0, 0, 1, 'u', 0}, "hsecret\x00"...), false, []byte{0, 0x5b, 0, 0, 0, 0, 0, 0})
	notHTTP := "tsconnect: not an HTTP request line: this port serves SOCKS5 (first byte 0x05) and HTTP proxy requests\n"
	b.socksRaw(sk, "version byte 6 (served as HTTP)", []byte{6, 1, 0, '\r', '\n', '\r', '\n'}, false,
		fmt.Appendf(nil, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(notHTTP), notHTTP))

	// Ports: the allowed name, address and suffix on ports their rules do
	// not list; listeners on hweb :22 and :8080 would count a leak.
	const pt = "port"
	for _, port := range []uint16{22, 8080, 1, 65535} {
		b.hostRows(pt, web, port, hcDenied(webRule))
	}
	b.hostRows(pt, hcWeb, 22, hcDenied(webRule))
	b.hostRows(pt, "HWEB.tailnet.test.", 8080, hcDenied(webRule))
	b.hostRows(pt, webIP4.String(), 22, hcDenied(webIPRule))
	b.hostRows(pt, webIP4.String(), 443, hcDenied(webIPRule))
	b.hostRows(pt, "::ffff:"+webIP4.String(), 8080, hcDenied(webIPRule))
	b.hostRows(pt, "a.corp.example", 443, hcDenied(corpRule))
	b.hostRows(pt, secretFQDN, 443, hcDenied(hcNoRule))
	b.hostRows(pt, secretFQDN, 22, hcDenied(hcNoRule))
	b.socksRow(pt, "ATYP=1 hweb's IPv4:8080", hcIPReq(1, webIP4, 8080), fail(0x02), webIPRule)

	// Control again, after everything: the proxy still serves.
	b.socksHost("control", "socks5 hweb (after the corpus)", hcWeb, 80, hcAllowed())
	return b.rows
}

func TestHostileCorpus(t *testing.T) {
	begin := time.Now()
	h := newHCNet(t)
	t.Logf("allowlist %s; loopback canary port %d; proxy %s", h.spec, h.loopPort, h.addr())
	rows := h.corpus(t)

	before := h.snapshot()
	stats0 := h.c.ProxyStats()
	clients := make([][]string, len(rows))
	perCat := map[string]int{}
	catAllow, catDeny := map[string]int{}, map[string]int{}
	var cats []string
	wantAllow, wantDeny, wantInside := 0, 0, 0
	for i, r := range rows {
		if perCat[r.cat] == 0 {
			cats = append(cats, r.cat)
		}
		perCat[r.cat]++
		catAllow[r.cat] += r.allow
		catDeny[r.cat] += r.deny
		wantAllow += r.allow
		wantInside += r.inside
		wantDeny += r.deny
		t.Run(r.cat+"/"+r.name, func(t *testing.T) {
			pre := h.snapshot()
			clients[i] = r.run(t, h)
			post := h.snapshot()
			// A tunnel refused inside is closed at once: hweb may accept
			// it after the client has its answer.
			for deadline := time.Now().Add(5 * time.Second); r.inside > 0 && post["hweb:80"] < pre["hweb:80"]+int64(r.allow+r.inside) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				post = h.snapshot()
			}
			for k, n := range post {
				want := pre[k]
				if k == "hweb:80" {
					want += int64(r.allow + r.inside)
				}
				if n != want {
					t.Errorf("%s saw %d connections, want %d", k, n-pre[k], want-pre[k])
				}
			}
		})
	}

	// Nothing reached a service but the allowed requests, one connection
	// each. A connection that arrived late would show here.
	time.Sleep(200 * time.Millisecond)
	after := h.snapshot()
	for k, n := range after {
		want := before[k]
		if k == "hweb:80" {
			want += int64(wantAllow + wantInside)
		}
		if n != want {
			t.Errorf("over the corpus, %s saw %d connections, want %d", k, n-before[k], want-before[k])
		}
	}
	if after["hweb:80"]-before["hweb:80"] == 0 {
		t.Error("no allowed request got through: the zero counts prove nothing")
	}

	// The proxy counted each allowed request and each policy denial once;
	// a tunnel refused inside is one the proxy allowed.
	deadline := time.Now().Add(10 * time.Second)
	var st = h.c.ProxyStats()
	pAllow, pDeny := int64(wantAllow+wantInside), int64(wantDeny-wantInside)
	for time.Now().Before(deadline) {
		st = h.c.ProxyStats()
		if st.Allowed-stats0.Allowed == pAllow && st.Denied-stats0.Denied == pDeny && st.Active == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Allowed-stats0.Allowed != pAllow || st.Denied-stats0.Denied != pDeny {
		t.Errorf("proxy stats: %d allowed, %d denied; want %d and %d", st.Allowed-stats0.Allowed, st.Denied-stats0.Denied, pAllow, pDeny)
	}

	// Every row's connections have audit lines; only allowed requests have
	// a resolved address, and it is hweb's; denials name the rule.
	var lines map[string][]map[string]any
	for {
		lines = map[string][]map[string]any{}
		sc := bufio.NewScanner(strings.NewReader(h.audit.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			c, _ := rec["client"].(string)
			lines[c] = append(lines[c], rec)
		}
		missing := 0
		for _, cs := range clients {
			for _, c := range cs {
				if len(lines[c]) == 0 {
					missing++
				}
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d connections have no audit line", missing)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	webAddrs := []string{h.web.IP4.String() + ":", "[" + h.web.IP6.String() + "]:"}
	for i, r := range rows {
		allow, deny := 0, 0
		for _, c := range clients[i] {
			for _, rec := range lines[c] {
				resolved, _ := rec["resolved"].(string)
				rule, _ := rec["rule"].(string)
				reason, _ := rec["reason"].(string)
				switch rec["decision"] {
				case "allow":
					allow++
					if !strings.HasPrefix(resolved, webAddrs[0]) && !strings.HasPrefix(resolved, webAddrs[1]) {
						t.Errorf("%s/%s: allowed, but resolved %q is not hweb's", r.cat, r.name, resolved)
					}
				case "deny":
					deny++
					if r.inside > 0 {
						if rule != "" || reason != r.rule || !strings.HasPrefix(resolved, webAddrs[0]) && !strings.HasPrefix(resolved, webAddrs[1]) {
							t.Errorf("%s/%s: audit deny %v, want reason %q, no rule, resolved hweb", r.cat, r.name, rec, r.rule)
						}
						continue
					}
					if hcIsReason(r.rule) && (rule != "" || reason != r.rule) {
						t.Errorf("%s/%s: audit deny names rule %q, reason %q; want no rule, reason %q", r.cat, r.name, rule, reason, r.rule)
					} else if !hcIsReason(r.rule) && rule != r.rule {
						t.Errorf("%s/%s: audit deny names rule %q, want %q", r.cat, r.name, rule, r.rule)
					}
					fallthrough
				default:
					if resolved != "" {
						t.Errorf("%s/%s: %v, yet resolved %q", r.cat, r.name, rec["decision"], resolved)
					}
				}
			}
		}
		if allow != r.allow || deny != r.deny {
			t.Errorf("%s/%s: audit has %d allow and %d deny lines, want %d and %d", r.cat, r.name, allow, deny, r.allow, r.deny)
		}
	}

	var summary []string
	for _, c := range cats {
		summary = append(summary, fmt.Sprintf("%s %d (%d allowed, %d denied)", c, perCat[c], catAllow[c], catDeny[c]))
	}
	t.Logf("%d rows (%s): %d allowed, %d policy denials, the rest refused as malformed or unsupported; %v",
		len(rows), strings.Join(summary, ", "), wantAllow, wantDeny, time.Since(begin).Round(time.Millisecond))
	if len(rows) < 100 {
		t.Errorf("only %d rows", len(rows))
	}
}
