package connector_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestTunnelNames: a SOCKS5 tunnel to the allowed pweb carries TLS and
// HTTP for pweb, and is refused — a TLS alert, a 403 written by the
// connector, a deny audit record with the name seen — when the client
// names psecret inside it. (e2e's TestVhostTunnels does the same with
// curl, openssl and nginx, whose access logs show that nothing reached
// the other vhost.)
func TestTunnelNames(t *testing.T) {
	p := newProxyNet(t)
	secret := p.secret.FQDN

	code, conn := socksConnect(t, p.addr(), "pweb", 443)
	if code != 0 {
		t.Fatalf("CONNECT pweb:443: reply %#x", code)
	}
	io.ReadFull(conn, make([]byte, 6)) // BND.ADDR, BND.PORT
	err := tls.Client(conn, &tls.Config{ServerName: secret, RootCAs: p.pool}).Handshake()
	conn.Close()
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("TLS with SNI %s through a tunnel to pweb: %v, want alert unrecognized name", secret, err)
	}

	code, conn = socksConnect(t, p.addr(), "pweb", 80)
	if code != 0 {
		t.Fatalf("CONNECT pweb:80: reply %#x", code)
	}
	io.ReadFull(conn, make([]byte, 6))
	io.WriteString(conn, "GET /1 HTTP/1.1\r\nHost: pweb\r\n\r\nGET /2 HTTP/1.1\r\nHost: psecret\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, want := range []string{"hello from pweb /1", "tsconnect: HTTP Host \"psecret\": the tunnel is for " + p.web.FQDN} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), want) {
			t.Errorf("response %d: %d %q, want %q…", i+1, resp.StatusCode, body, want)
		}
	}
	conn.Close()

	var got []connector.AuditRecord
	eventually(func() bool {
		got = got[:0]
		for _, l := range strings.Split(p.audit.String(), "\n") {
			var r connector.AuditRecord
			if json.Unmarshal([]byte(l), &r) == nil && r.Decision == "deny" && (r.SNI != "" || r.HTTPHost != "") {
				got = append(got, r)
			}
		}
		return len(got) == 2
	})
	if len(got) != 2 {
		t.Fatalf("deny records inside tunnels: %+v, want 2\n%s", got, p.audit.String())
	}
	if got[0].SNI != secret || got[1].HTTPHost != "psecret" || got[1].BytesUp == 0 {
		t.Errorf("deny records: %+v, want one with sni %s, one with http_host psecret and the first request's bytes", got, secret)
	}
	if got[0].BytesUp != 0 {
		t.Errorf("the refused ClientHello counted %d bytes up: it must not reach the target", got[0].BytesUp)
	}
}

// TestTunnelSameAddress: with Tunnels.SameAddress, a tunnel to the web
// node also carries an allowed name that resolves to its address (a
// MagicDNS extra record, as a homelab names its reverse proxy's vhosts),
// but not one that resolves elsewhere; with RequireName, a request
// without a Host is refused. Plaintext HTTP/2 (Go's own h2c client and
// server): a stream whose :authority names another host ends the
// connection with a GOAWAY and a deny record; the client's next
// connection works.
func TestTunnelSameAddress(t *testing.T) {
	// A control of its own, whose first node is given 100.64.0.1: the
	// extra records must name addresses before the nodes exist.
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{ExtraRecords: map[string]string{
		"alias.vh.test": "100.64.0.1",
		"other.vh.test": "100.64.0.200",
	}})
	web, _ := webNode(t, ctl, "samweb")
	if web.IP4.String() != "100.64.0.1" {
		t.Fatalf("the first node got %v, not 100.64.0.1: the extra record does not name it", web.IP4)
	}
	audit := new(syncBuffer)
	c := start(t, ctl, connector.Config{
		Allow:    dnsfilter.MustParse("samweb." + tailnettest.BaseDomain + ":80,81,.vh.test:80"),
		Tunnels:  connector.TunnelPolicy{SameAddress: true, RequireName: true},
		AuditLog: audit,
		Proxy:    &connector.ProxyConfig{Listen: "127.0.0.1:0"},
	})
	// A plaintext HTTP/2 (h2c) service beside it, as plaintext gRPC is.
	h2ln, err := web.Listen("tcp", ":81")
	if err != nil {
		t.Fatal(err)
	}
	h2srv := &http.Server{Protocols: new(http.Protocols), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.Host)
	})}
	h2srv.Protocols.SetUnencryptedHTTP2(true)
	go h2srv.Serve(h2ln)
	t.Cleanup(func() { h2srv.Close() })
	waitSeen(t, web, c)
	t.Run("h2c", func(t *testing.T) {
		d, err := proxy.SOCKS5("tcp", c.ProxyAddr(), nil, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{Protocols: new(http.Protocols), DialContext: d.(proxy.ContextDialer).DialContext}
		tr.Protocols.SetUnencryptedHTTP2(true) // prior knowledge, one connection
		hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		defer tr.CloseIdleConnections()
		for i, tc := range []struct{ host, want string }{
			{"", "HTTP/2.0 samweb:81"},
			{"alias.vh.test:81", "GOAWAY from server ErrCode:PROTOCOL_ERROR"}, // allowed on port 80 only
			{"samweb." + tailnettest.BaseDomain + ":81", "HTTP/2.0 samweb." + tailnettest.BaseDomain + ":81"},
		} {
			req, _ := http.NewRequest("GET", "http://samweb:81/", nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := hc.Do(req)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got = string(b)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("request %d (Host %q): %q, want %q", i+1, tc.host, got, tc.want)
			}
		}
		eventually(func() bool { return strings.Contains(audit.String(), `"http_host":"alias.vh.test"`) })
		if !strings.Contains(audit.String(), `"reason":"the tunnel is for samweb.`+tailnettest.BaseDomain+`; alias.vh.test is not allowed (port 81 not in 80)"`) {
			t.Errorf("no deny record for the h2c stream to alias.vh.test:\n%s", audit)
		}
	})
	for _, tc := range []struct{ req, want string }{
		{"GET / HTTP/1.1\r\nHost: alias.vh.test\r\n\r\n", "hello from samweb"},
		{"GET / HTTP/1.1\r\nHost: other.vh.test\r\n\r\n", `tsconnect: HTTP Host "other.vh.test": the tunnel is for samweb.` + tailnettest.BaseDomain + ", not other.vh.test"},
		{"GET / HTTP/1.0\r\n\r\n", "tsconnect: HTTP: a request without a Host"},
	} {
		code, conn := socksConnect(t, c.ProxyAddr(), "samweb", 80)
		if code != 0 {
			t.Fatalf("CONNECT samweb:80: reply %#x", code)
		}
		io.ReadFull(conn, make([]byte, 6))
		io.WriteString(conn, tc.req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if !strings.HasPrefix(string(body), tc.want) {
			t.Errorf("%q: %d %q, want %q…", tc.req, resp.StatusCode, body, tc.want)
		}
	}
}
