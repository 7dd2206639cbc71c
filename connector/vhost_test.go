package connector_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tsconnect/tsconnect/connector"
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
