package connector_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// syncBuffer is a bytes.Buffer safe for the proxy's audit writer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proxyNet is a tailnet with an allowed web service (HTTP :80, HTTPS
// :443), a service outside the allowlist, and a connector whose proxy
// allows only the web service.
type proxyNet struct {
	c         *connector.Connector
	web       *tailnettest.Node
	webHits   *tailnettest.Counter
	tlsHits   *tailnettest.Counter
	pool      *x509.CertPool
	caFile    string
	secret    *tailnettest.Node
	secretHit *tailnettest.Counter
	audit     *syncBuffer
}

func (p *proxyNet) addr() string { return p.c.ProxyAddr() }

func newProxyNet(t *testing.T) *proxyNet {
	t.Helper()
	ctl := tailnettest.Shared(t)
	p := &proxyNet{audit: new(syncBuffer)}
	p.web = ctl.StartNode(t, "pweb", "tag:web")
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from pweb "+r.URL.Path)
	})
	p.webHits = p.web.ServeHTTP(t, 80, hello)
	p.tlsHits, p.pool, p.caFile = p.web.ServeHTTPS(t, 443, hello)
	p.secret = ctl.StartNode(t, "psecret", "tag:other")
	p.secretHit = p.secret.ServeHTTP(t, 80, hello)
	p.secret.ServeTCP(t, 443, nil)

	p.c = start(t, ctl, connector.Config{
		Allow:    dnsfilter.MustParse("pweb." + tailnettest.BaseDomain + ":80,443"),
		AuditLog: p.audit,
		Proxy:    &connector.ProxyConfig{Listen: "127.0.0.1:0"},
	})
	waitSeen(t, p.web, p.c)
	waitSeen(t, p.secret, p.c)
	return p
}

// socksConnect performs a raw SOCKS5 CONNECT to a domain name and returns
// the reply code.
func socksConnect(t *testing.T, proxyAddr, host string, port uint16) (byte, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	conn.Write([]byte{5, 1, 0})
	var greet [2]byte
	if _, err := io.ReadFull(conn, greet[:]); err != nil || greet != [2]byte{5, 0} {
		t.Fatalf("greeting: %v %v", greet, err)
	}
	req := []byte{5, 1, 0, 3, byte(len(host))}
	req = append(req, host...)
	req = binary.BigEndian.AppendUint16(req, port)
	conn.Write(req)
	var rep [4]byte
	if _, err := io.ReadFull(conn, rep[:]); err != nil {
		t.Fatalf("reply to CONNECT %s: %v", host, err)
	}
	return rep[1], conn
}

func TestProxy(t *testing.T) {
	p := newProxyNet(t)
	fqdn := p.web.FQDN

	t.Run("socks5 x/net/proxy", func(t *testing.T) {
		d, err := proxy.SOCKS5("tcp", p.addr(), nil, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{Dial: d.Dial}, Timeout: 20 * time.Second}
		for _, u := range []string{"http://pweb/a", "http://" + fqdn + "/b"} {
			if got := fetch(t, hc, u); !strings.HasPrefix(got, "hello from pweb /") {
				t.Errorf("%s: %q", u, got)
			}
		}
	})

	t.Run("http absolute-form and CONNECT", func(t *testing.T) {
		pu, _ := url.Parse("http://" + p.addr())
		hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			Proxy:           http.ProxyURL(pu),
			TLSClientConfig: &tls.Config{RootCAs: p.pool},
		}}
		before := p.tlsHits.Load()
		for _, u := range []string{"http://pweb/c", "http://" + fqdn + "/d", "https://pweb/e", "https://" + fqdn + "/f"} {
			if got := fetch(t, hc, u); !strings.HasPrefix(got, "hello from pweb /") {
				t.Errorf("%s: %q", u, got)
			}
		}
		if p.tlsHits.Load() == before {
			t.Error("no TLS connection reached the service")
		}
	})

	t.Run("curl", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Fatal("curl is required (apt-get install curl)")
		}
		for _, args := range [][]string{
			{"--socks5-hostname", p.addr(), "http://pweb/g"},
			{"--proxy", "socks5h://" + p.addr(), "--cacert", p.caFile, "https://" + fqdn + "/h"},
			{"-x", "http://" + p.addr(), "http://" + fqdn + "/i"},
			{"-x", "http://" + p.addr(), "--cacert", p.caFile, "https://pweb/j"},
		} {
			out, code := curl(t, args...)
			if code != 0 || !strings.HasPrefix(out, "hello from pweb /") {
				t.Errorf("curl %v: exit %d, %q", args, code, out)
			}
		}
	})

	t.Run("denied", func(t *testing.T) {
		before := p.secretHit.Load()
		if code, conn := socksConnect(t, p.addr(), "psecret", 80); code != 0x02 {
			t.Errorf("SOCKS5 to psecret: reply %#x, want 0x02 (not allowed by ruleset)", code)
		} else {
			conn.Close()
		}
		if code, conn := socksConnect(t, p.addr(), p.secret.IP4.String(), 80); code != 0x02 {
			t.Errorf("SOCKS5 to psecret's IP as a name: reply %#x, want 0x02", code)
		} else {
			conn.Close()
		}
		if code, conn := socksConnect(t, p.addr(), "pweb", 22); code != 0x02 {
			t.Errorf("SOCKS5 to pweb:22 (port not allowed): reply %#x, want 0x02", code)
		} else {
			conn.Close()
		}

		out, code := curl(t, "-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "-x", "http://"+p.addr(), "http://psecret/")
		if code != 0 || out != "403" {
			t.Errorf("curl -x to psecret: exit %d, status %q, want 403", code, out)
		}
		status, body := rawHTTP(t, p.addr(), "GET http://psecret/ HTTP/1.1\r\nHost: psecret\r\n\r\n")
		if status != 403 || !strings.Contains(body, "psecret") || !strings.Contains(body, "no rule matches") {
			t.Errorf("GET via proxy: %d %q, want 403 naming host and rule", status, body)
		}
		status, _ = rawHTTP(t, p.addr(), "CONNECT psecret:443 HTTP/1.1\r\nHost: psecret:443\r\n\r\n")
		if status != 403 {
			t.Errorf("CONNECT psecret:443: %d, want 403", status)
		}
		// The Host header never decides: the URL's host is what is dialed.
		status, body = rawHTTP(t, p.addr(), "GET http://psecret/ HTTP/1.1\r\nHost: pweb\r\n\r\n")
		if status != 403 {
			t.Errorf("GET psecret with Host: pweb: %d %q, want 403", status, body)
		}
		_, out2 := curl(t, "--socks5-hostname", p.addr(), "http://psecret/")
		if out2 != 97 {
			t.Errorf("curl --socks5-hostname to psecret: exit %d, want 97 (proxy handshake error)", out2)
		}
		if _, err := p.c.Dial(context.Background(), "tcp", "psecret:80"); !errors.Is(err, dnsfilter.ErrDenied) {
			t.Errorf("in-process Dial psecret: %v, want ErrDenied", err)
		}
		if _, err := p.c.HTTPClient().Get("http://psecret/"); !errors.Is(err, dnsfilter.ErrDenied) {
			t.Errorf("HTTPClient psecret: %v, want ErrDenied", err)
		}
		if n := p.secretHit.Load() - before; n != 0 {
			t.Errorf("the denied service saw %d connections", n)
		}
	})

	t.Run("hostile destinations", func(t *testing.T) {
		before := p.secretHit.Load() + p.webHits.Load()
		for _, host := range []string{
			"pweb." + tailnettest.BaseDomain + ".evil.example", "evilpweb." + tailnettest.BaseDomain,
			"x.pweb." + tailnettest.BaseDomain, "pweb." + tailnettest.BaseDomain + "..",
			"pwеb." + tailnettest.BaseDomain, // Cyrillic е
			"pweb。" + tailnettest.BaseDomain, // ideographic full stop
			"0x7f.0.0.1", "127.1", "2130706433", "0177.0.0.1", "127.0.0.1", "::ffff:127.0.0.1",
			"localhost", "169.254.169.254", "psecret", p.secret.IP4.String(), "pweb%00", "pweb ",
		} {
			code, conn := socksConnect(t, p.addr(), host, 80)
			conn.Close()
			if code == 0 {
				t.Errorf("SOCKS5 CONNECT %q succeeded", host)
			}
		}
		for _, target := range []string{"psecret:80\r\nX: y", "pweb:80 extra", "[::1]:80", "127.0.0.1:80", "pweb@psecret:80"} {
			status, _ := rawHTTP(t, p.addr(), "CONNECT "+target+" HTTP/1.1\r\nHost: pweb:80\r\n\r\n")
			if status == 200 {
				t.Errorf("CONNECT %q succeeded", target)
			}
		}
		if n := p.secretHit.Load() + p.webHits.Load() - before; n != 0 {
			t.Errorf("services saw %d connections from hostile requests", n)
		}
		// Case and one trailing dot are the same name, and allowed.
		if code, conn := socksConnect(t, p.addr(), "PWEB."+strings.ToUpper(tailnettest.BaseDomain)+".", 80); code != 0 {
			t.Errorf("upper case FQDN with trailing dot: reply %#x", code)
		} else {
			conn.Close()
		}
	})

	t.Run("audit", func(t *testing.T) {
		var allow, deny bool
		sc := bufio.NewScanner(strings.NewReader(p.audit.String()))
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			for _, f := range []string{"time", "client", "protocol", "host", "port", "resolved", "decision", "rule", "bytes_up", "bytes_down", "duration_ms"} {
				if _, ok := rec[f]; !ok {
					t.Errorf("audit line lacks %q: %s", f, sc.Text())
				}
			}
			switch rec["decision"] {
			case "allow":
				if strings.HasPrefix(rec["resolved"].(string), p.web.IP4.String()+":") && rec["bytes_down"].(float64) > 0 {
					allow = true
				}
			case "deny":
				if strings.Contains(rec["host"].(string), "psecret") && rec["rule"] == "" && rec["reason"] == "no rule matches" {
					deny = true
				}
			}
		}
		if !allow || !deny {
			t.Errorf("audit has allow to pweb's tailnet IP: %v, deny of psecret for no rule: %v\n%s", allow, deny, p.audit.String())
		}
	})

	t.Run("environment", func(t *testing.T) {
		t.Setenv("TS_AUTHKEY", "hskey-auth-must-not-leak")
		t.Setenv("VAULT_TOKEN", "hvs.must-not-leak")
		t.Setenv("HTTP_PROXY", "http://stale:1")
		out, err := p.c.Command(context.Background(), "env").Output()
		if err != nil {
			t.Fatal(err)
		}
		env := string(out)
		for _, want := range []string{"ALL_PROXY=socks5h://" + p.addr(), "all_proxy=socks5h://" + p.addr(),
			"HTTP_PROXY=http://" + p.addr(), "HTTPS_PROXY=http://" + p.addr(), "https_proxy=http://" + p.addr(), "NO_PROXY="} {
			if !strings.Contains(env, want+"\n") && !strings.Contains(env, want) {
				t.Errorf("child env lacks %s", want)
			}
		}
		for _, bad := range []string{"must-not-leak", "stale:1", "TS_AUTHKEY", "VAULT_TOKEN"} {
			if strings.Contains(env, bad) {
				t.Errorf("child env contains %q", bad)
			}
		}
		// A child using the environment alone reaches the allowed service.
		cmd := p.c.Command(context.Background(), "curl", "-sS", "--max-time", "20", "http://pweb/k")
		if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "hello from pweb") {
			t.Errorf("curl with the proxy env: %v %q", err, out)
		}
	})
}

func fetch(t *testing.T, hc *http.Client, u string) string {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// curl runs the real curl with no proxy variables of its own.
func curl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("curl", append([]string{"-sS", "--max-time", "20"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "NO_PROXY=", "no_proxy="}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Logf("curl %v: exit %d: %s", args, code, stderr.String())
	}
	return string(out), code
}

// rawHTTP sends a request to the proxy as bytes and returns the status
// code and body.
func rawHTTP(t *testing.T, proxyAddr, req string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, req)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 {
		return 200, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
