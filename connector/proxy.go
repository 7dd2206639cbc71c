package connector

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/secrets"
	"github.com/tsconnect/tsconnect/socks"
)

// DefaultProxyAddr is where the proxy listens when ProxyConfig.Listen is
// empty: SOCKS5 and HTTP on one loopback port, as the reference
// integration does.
const DefaultProxyAddr = "127.0.0.1:1055"

// ProxyConfig configures the local SOCKS5 + HTTP proxy. A nil
// Config.Proxy means no proxy; the zero ProxyConfig listens on
// DefaultProxyAddr without auth.
type ProxyConfig struct {
	// Listen is the listen address. Empty means "127.0.0.1:1055"; port 0
	// picks a free port (see Connector.ProxyAddr). A non-loopback address
	// is refused unless AllowNonLoopback is set and Username is not empty.
	Listen string

	// Username and Password, if set, are required of clients (SOCKS5
	// RFC 1929, HTTP Proxy-Authorization Basic).
	Username, Password string

	// AllowNonLoopback permits a non-loopback Listen address (with auth).
	AllowNonLoopback bool

	// HandshakeTimeout, MaxConns and MaxConnsPerClient (the proxy's clients): see
	// socks.Config. Zero values take its defaults. Audit records, idle
	// timeout and the bound on open connections are the connector's
	// (Config.AuditLog, Audit, IdleTimeout, MaxConns).
	HandshakeTimeout time.Duration
	MaxConns         int
	// MaxConnsPerClient bounds the proxy's clients of one uid (or one IP
	// address): see socks.Config. 0: three quarters of MaxConns.
	MaxConnsPerClient int
}

// startProxy starts the proxy if configured.
func (c *Connector) startProxy() error {
	pc := c.cfg.Proxy
	if pc == nil {
		return nil
	}
	addr := pc.Listen
	if addr == "" {
		addr = DefaultProxyAddr
	}
	srv, err := socks.Listen(socks.Config{
		Addr:              addr,
		Dial:              c.Dial,
		Check:             c.check,
		Expand:            c.expand,
		Username:          pc.Username,
		Password:          pc.Password,
		AllowNonLoopback:  pc.AllowNonLoopback,
		HandshakeTimeout:  pc.HandshakeTimeout,
		IdleTimeout:       c.cfg.IdleTimeout,
		DialTimeout:       c.cfg.DialTimeout,
		MaxConns:          pc.MaxConns,
		MaxConnsPerClient: pc.MaxConnsPerClient,
		Audit:             c.flows.fromProxy,
		Logf:              c.cfg.Logf,
	})
	if err != nil {
		return fmt.Errorf("connector: proxy: %w", err)
	}
	c.proxy = srv
	return nil
}

// ProxyAddr returns the proxy's listen address ("127.0.0.1:1055"), or ""
// when no proxy runs.
func (c *Connector) ProxyAddr() string {
	if c.proxy == nil {
		return ""
	}
	return c.proxy.Addr().String()
}

// ProxyStats returns the proxy's connection counters (zero without a
// proxy).
func (c *Connector) ProxyStats() socks.Stats {
	if c.proxy == nil {
		return socks.Stats{}
	}
	return c.proxy.Stats()
}

// ProxyEnv returns the variables that point common clients at the proxy:
// ALL_PROXY (socks5h, so names resolve inside the tailnet), HTTP_PROXY,
// HTTPS_PROXY, their lower-case twins, NO_PROXY for loopback,
// NODE_USE_ENV_PROXY=1 (Node.js 24 reads HTTP(S)_PROXY only with it) and
// JAVA_TOOL_OPTIONS with the JVM's http(s).proxyHost and proxyPort (Environ
// appends them to a JAVA_TOOL_OPTIONS already set). With proxy auth, the
// credentials are in the URLs (the JVM takes none from properties). Nil
// without a proxy.
func (c *Connector) ProxyEnv() []string {
	addr := c.ProxyAddr()
	if addr == "" {
		return nil
	}
	userinfo := ""
	if pc := c.cfg.Proxy; pc.Username != "" {
		userinfo = urlEscape(pc.Username) + ":" + urlEscape(pc.Password) + "@"
	}
	socksURL := "socks5h://" + userinfo + addr
	httpURL := "http://" + userinfo + addr
	noProxy := "localhost,127.0.0.1,::1"
	var env []string
	for _, kv := range [][2]string{
		{"ALL_PROXY", socksURL},
		{"HTTP_PROXY", httpURL},
		{"HTTPS_PROXY", httpURL},
		{"NO_PROXY", noProxy},
	} {
		env = append(env, kv[0]+"="+kv[1], strings.ToLower(kv[0])+"="+kv[1])
	}
	host, port, _ := net.SplitHostPort(addr)
	java := fmt.Sprintf("-Dhttp.proxyHost=%[1]s -Dhttp.proxyPort=%[2]s -Dhttps.proxyHost=%[1]s -Dhttps.proxyPort=%[2]s -Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1]", host, port)
	return append(env, "NODE_USE_ENV_PROXY=1", javaToolOptions+"="+java)
}

const javaToolOptions = "JAVA_TOOL_OPTIONS"

func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("-._~", ch) >= 0 {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// Environ returns base (os.Environ() if nil) with every secret-bearing
// variable removed (see secrets.ScrubEnv) and any existing proxy variables
// replaced by ProxyEnv. It is the environment to give a child process.
func (c *Connector) Environ(base []string) []string {
	if base == nil {
		base = os.Environ()
	}
	env := secrets.ScrubEnv(base)
	if add := c.ProxyEnv(); add != nil {
		drop := map[string]bool{}
		for _, kv := range add {
			drop[kv[:strings.IndexByte(kv, '=')]] = true
		}
		kept := env[:0:0]
		var java string // the JAVA_TOOL_OPTIONS set before, kept in front of ours
		for _, kv := range env {
			i := strings.IndexByte(kv, '=')
			switch {
			case i >= 0 && kv[:i] == javaToolOptions:
				java = kv[i+1:]
			case i < 0 || !drop[kv[:i]]:
				kept = append(kept, kv)
			}
		}
		for i, kv := range add {
			if k, v, _ := strings.Cut(kv, "="); k == javaToolOptions && java != "" {
				add[i] = k + "=" + java + " " + v
			}
		}
		env = append(kept, add...)
	}
	return env
}

// Command is exec.CommandContext with Environ as the child's environment:
// the proxy variables set and no secrets inherited.
func (c *Connector) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = c.Environ(nil)
	return cmd
}

// HTTPClient returns an HTTP client whose connections go through Dial,
// with the allowlist applied; they are audited and counted with protocol
// "http-client".
func (c *Connector) HTTPClient() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return c.dialFlow(ctx, origin{protocol: ProtocolHTTPClient}, network, addr)
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// Allowlist returns the allowlist in force (nil: none).
func (c *Connector) Allowlist() *dnsfilter.List { return c.cfg.Allow }

// expand turns a MagicDNS short name into the tailnet FQDN.
func (c *Connector) expand(host string) string {
	v := c.view.load()
	if v == nil {
		return host
	}
	return dnsfilter.Expand(host, v.suffix)
}

// Check is the allowlist's decision on host (a MagicDNS short name is
// expanded to the tailnet's FQDN first) and port: what Dial, the proxy
// and forwards decide before anything is resolved or dialed.
func (c *Connector) Check(host string, port uint16) dnsfilter.Decision {
	return c.cfg.Allow.Check(c.expand(host), port)
}

// check is Check as the proxy's Config.Check wants it. It is the
// decision on each of the proxy's requests, counted in the rule hits.
func (c *Connector) check(host string, port uint16) error {
	d := c.Check(host, port)
	c.flows.m.hit(d)
	return d.Err(host, port)
}
