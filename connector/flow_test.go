package connector_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// records collects what Config.Audit receives.
type records struct {
	mu   sync.Mutex
	recs []connector.AuditRecord
}

func (r *records) add(rec connector.AuditRecord) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

// wait returns the first record match accepts, failing after 10 s.
func (r *records) wait(t *testing.T, what string, match func(connector.AuditRecord) bool) connector.AuditRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		for _, rec := range r.recs {
			if match(rec) {
				r.mu.Unlock()
				return rec
			}
		}
		all := fmt.Sprintf("%+v", r.recs)
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no audit record for %s; have %s", what, all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually polls cond for up to 5 s, for counts that land just after
// what the client sees; the caller then asserts on the final value.
func eventually(cond func() bool) {
	for deadline := time.Now().Add(5 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// echo writes msg on c, half-closes, and returns what comes back.
func echo(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConnectionLayer: connections from Dial, HTTPClient and Forward are
// decided, counted, bounded, timed out and audited by the connector, as
// the proxy's are.
func TestConnectionLayer(t *testing.T) {
	ctl := tailnettest.Shared(t)
	name := nodeName("layer-echo")
	svc := echoNode(t, ctl, name)
	webName := nodeName("layer-web")
	web, _ := webNode(t, ctl, webName)
	fqdn, webFQDN := name+"."+tailnettest.BaseDomain, webName+"."+tailnettest.BaseDomain
	const idle, maxConns = 2 * time.Second, 3
	recs := new(records)
	audit := new(syncBuffer)
	c := start(t, ctl, connector.Config{
		Allow:       dnsfilter.MustParse(fqdn + ":7," + webFQDN + ":80"),
		Audit:       recs.add,
		AuditLog:    audit,
		IdleTimeout: idle,
		MaxConns:    maxConns,
		Proxy:       &connector.ProxyConfig{Listen: "127.0.0.1:0"},
	})
	waitSeen(t, svc, c)
	waitSeen(t, web, c)

	t.Run("dial", func(t *testing.T) {
		conn, err := c.Dial(context.Background(), "tcp", name+":7")
		if err != nil {
			t.Fatal(err)
		}
		if got := echo(t, conn, "ping"); got != "ping" {
			t.Fatalf("echo %q", got)
		}
		conn.Close()
		rec := recs.wait(t, "the dial", func(r connector.AuditRecord) bool {
			return r.Protocol == connector.ProtocolDial && r.Decision == "allow"
		})
		if rec.Host != fqdn || rec.Port != 7 || rec.BytesUp != 4 || rec.BytesDown != 4 || rec.Resolved == "" || rec.Error != "" {
			t.Errorf("record %+v: want host %s port 7, 4 bytes each way, the resolved address, no error", rec, fqdn)
		}

		_, err = c.Dial(context.Background(), "tcp", name+":22")
		var de *dnsfilter.DeniedError
		if !errors.As(err, &de) {
			t.Fatalf("dial to port 22: %v, want a denial", err)
		}
		rec = recs.wait(t, "the denial", func(r connector.AuditRecord) bool {
			return r.Protocol == connector.ProtocolDial && r.Decision == "deny"
		})
		if rec.Port != 22 || rec.Reason == "" || rec.Error == "" {
			t.Errorf("deny record %+v: want port 22, a reason and the error", rec)
		}
	})

	t.Run("http-client", func(t *testing.T) {
		hc := c.HTTPClient()
		resp, err := hc.Get("http://" + webName + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		hc.CloseIdleConnections() // the record is written when the connection closes
		rec := recs.wait(t, "the HTTP client's connection", func(r connector.AuditRecord) bool {
			return r.Protocol == connector.ProtocolHTTPClient && r.Decision == "allow"
		})
		if rec.Host != webFQDN || rec.Port != 80 {
			t.Errorf("record %+v: want %s:80", rec, webFQDN)
		}
	})

	t.Run("forward", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fw := c.Forward(ln, name+":7")
		defer fw.Close()
		local, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if got := echo(t, local, "hello"); got != "hello" {
			t.Fatalf("echo %q", got)
		}
		local.Close()
		rec := recs.wait(t, "the forward", func(r connector.AuditRecord) bool {
			return r.Protocol == connector.ProtocolForward && r.Client == local.LocalAddr().String()
		})
		if rec.Decision != "allow" || rec.BytesUp != 5 || rec.BytesDown != 5 {
			t.Errorf("record %+v: want allow, 5 bytes each way", rec)
		}
		// Counted once the splice has ended, just after the record.
		eventually(func() bool { return fw.Stats().BytesDown >= 5 })
		if st := fw.Stats(); st.Accepted != 1 || st.BytesUp != 5 || st.BytesDown != 5 {
			t.Errorf("forward stats %+v", st)
		}

		// An idle forwarded connection is closed at IdleTimeout, as a
		// proxy tunnel is.
		quiet, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer quiet.Close()
		t0 := time.Now()
		quiet.SetReadDeadline(time.Now().Add(idle + 10*time.Second))
		if _, err := quiet.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle forward: read %v, want EOF", err)
		}
		if d := time.Since(t0); d < idle {
			t.Errorf("idle forward closed after %v, before the %v idle timeout", d, idle)
		}
		rec = recs.wait(t, "the idle forward", func(r connector.AuditRecord) bool {
			return r.Client == quiet.LocalAddr().String() && strings.Contains(r.Error, "idle")
		})
		t.Logf("idle: %+v", rec)
	})

	// A proxy tunnel that carries nothing is closed at IdleTimeout; one
	// that does stays open. The record says why the quiet one ended.
	t.Run("proxy-idle", func(t *testing.T) {
		var tunnels [2]net.Conn
		for i := range tunnels {
			code, conn := socksConnect(t, c.ProxyAddr(), name, 7)
			defer conn.Close()
			if code != 0 {
				t.Fatalf("reply %#x", code)
			}
			io.ReadFull(conn, make([]byte, 6)) // BND.ADDR, BND.PORT
			tunnels[i] = conn
		}
		quiet, busy := tunnels[0], tunnels[1]
		t0 := time.Now()
		for time.Since(t0) < idle+idle/2 {
			busy.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := busy.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(busy, make([]byte, 1)); err != nil {
				t.Fatalf("busy tunnel: %v", err)
			}
			time.Sleep(idle / 4)
		}
		quiet.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := quiet.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("quiet tunnel still open after %v: read %v", time.Since(t0), err)
		}
		recs.wait(t, "the idle tunnel", func(r connector.AuditRecord) bool {
			return r.Protocol == "socks5" && r.Client == quiet.LocalAddr().String() && strings.Contains(r.Error, "idle")
		})
	})

	t.Run("max-conns", func(t *testing.T) {
		// The earlier tunnels' connections close just after their clients.
		eventually(func() bool { return c.Stats().Active == 0 })
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for len(open) < maxConns {
			conn, err := c.Dial(context.Background(), "tcp", name+":7")
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, conn)
		}
		if st := c.Stats(); st.Active != maxConns {
			t.Errorf("Stats.Active %d, want %d", st.Active, maxConns)
		}
		_, err := c.Dial(context.Background(), "tcp", name+":7")
		if !errors.Is(err, connector.ErrTooManyConns) {
			t.Fatalf("dial beyond MaxConns: %v, want ErrTooManyConns", err)
		}
		open[0].Close()
		conn, err := c.Dial(context.Background(), "tcp", name+":7")
		if err != nil {
			t.Fatalf("dial after one closed: %v", err)
		}
		open[0] = conn
	})

	st := c.Stats()
	if st.Allowed < 4 || st.Denied < 1 || st.Failed < 1 || st.BytesUp < 9 || st.BytesDown < 9 {
		t.Errorf("Stats %+v", st)
	}
	var m strings.Builder
	c.WriteMetrics(&m)
	for _, want := range []string{
		`tsconnect_connections_total{protocol="dial",decision="allow"}`,
		`tsconnect_connections_total{protocol="forward",decision="allow"}`,
		`tsconnect_connections_total{protocol="http-client",decision="allow"}`,
		`tsconnect_denials_total{rule="` + fqdn + `:7"} 1`, // port 22 is not in the rule's ports
		"tsconnect_ready 1",
	} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, m.String())
		}
	}
	// Every record reached the JSON log too.
	lines := 0
	for sc := bufio.NewScanner(strings.NewReader(audit.String())); sc.Scan(); lines++ {
	}
	recs.mu.Lock()
	n := len(recs.recs)
	recs.mu.Unlock()
	if lines != n {
		t.Errorf("%d JSON lines, %d hook records", lines, n)
	}
}

// TestReadyAndHealth: /readyz is 200 while the node runs and 503 once it
// is closed; /metrics is Prometheus text.
func TestReadyAndHealth(t *testing.T) {
	ctl := tailnettest.Shared(t)
	c := start(t, ctl, connector.Config{})
	h := c.HealthHandler()
	get := func(path string) (int, string) {
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, httptest.NewRequest("GET", path, nil))
		return rr.Code, rr.Body.String()
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz %d %q while running", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "# TYPE tsconnect_connections_active gauge") {
		t.Errorf("/metrics %d:\n%s", code, body)
	}
	c.Close()
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "closed") {
		t.Errorf("/readyz %d %q after Close", code, body)
	}
	if code, _ := get("/healthz"); code != 503 {
		t.Errorf("/healthz %d after Close", code)
	}
}

// TestConnectorsInOneProcess: eight connectors in one process, each with
// its own allowlist, proxy and audit log, do not talk across: a host one
// allows, the others deny, and each audits only its own connections. Each
// leaves the control plane on Close while the rest keep working.
func TestConnectorsInOneProcess(t *testing.T) {
	ctl := tailnettest.Shared(t)
	const n = 8
	var svcs [n]*tailnettest.Node
	var names [n]string
	var cs [n]*connector.Connector
	var audits [n]*syncBuffer
	for i := range n {
		names[i] = nodeName(fmt.Sprintf("multi-%d", i))
		svcs[i] = echoNode(t, ctl, names[i])
	}
	for i := range n {
		audits[i] = new(syncBuffer)
		cs[i] = start(t, ctl, connector.Config{
			Allow:    dnsfilter.MustParse(names[i] + "." + tailnettest.BaseDomain + ":7"),
			AuditLog: audits[i],
			Proxy:    &connector.ProxyConfig{Listen: "127.0.0.1:0"},
		})
	}
	for i := range n {
		waitSeen(t, svcs[i], cs[i])
	}
	// tunnel checks c's proxy to host: allowed (and echoing) or denied.
	tunnel := func(t *testing.T, c *connector.Connector, host string, allowed bool) {
		t.Helper()
		code, conn := socksConnect(t, c.ProxyAddr(), host, 7)
		defer conn.Close()
		switch {
		case allowed && code != 0:
			t.Errorf("%s via %s: reply %#x, want success", host, c.Name(), code)
		case allowed:
			io.ReadFull(conn, make([]byte, 6)) // the reply's IPv4 BND.ADDR and BND.PORT
			if got := echo(t, conn, "x"); got != "x" {
				t.Errorf("%s via %s: echo %q", host, c.Name(), got)
			}
		case code != 2:
			t.Errorf("%s via %s: reply %#x, want 0x02 not allowed", host, c.Name(), code)
		}
	}
	for i := range n {
		for j := range n {
			tunnel(t, cs[i], names[j], i == j)
		}
	}
	for i := range n {
		c, a := cs[i], audits[i]
		var allow, deny int
		deadline := time.Now().Add(10 * time.Second)
		for {
			allow, deny = strings.Count(a.String(), `"decision":"allow"`), strings.Count(a.String(), `"decision":"deny"`)
			if allow+deny >= n || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if allow != 1 || deny != n-1 || !strings.Contains(a.String(), names[i]+"."+tailnettest.BaseDomain) {
			t.Errorf("%s's audit: %d allow, %d deny, want 1 (%s) and %d:\n%s", c.Name(), allow, deny, names[i], n-1, a)
		}
		if st := c.Stats(); st.Allowed != 1 || st.Denied != n-1 {
			t.Errorf("%s's Stats %+v, want 1 allowed, %d denied", c.Name(), st, n-1)
		}
	}

	// Half of them leave; the others keep working.
	for i := range n / 2 {
		t0 := time.Now()
		if err := cs[i].Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ctl.WaitGone(cs[i].Name(), t0, 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	for i := n / 2; i < n; i++ {
		tunnel(t, cs[i], names[i], true)
		tunnel(t, cs[i], names[0], false)
		if err := cs[i].Ready(context.Background()); err != nil {
			t.Errorf("%s not ready after the others closed: %v", cs[i].Name(), err)
		}
	}
}

// TestTSNetInternals pins, by name, the behaviour of tailscale.com
// internals the connector relies on (tsnetinternals.go), so that an
// upgrade that changes them fails here.
func TestTSNetInternals(t *testing.T) {
	ctl := tailnettest.Shared(t)
	name := nodeName("internals")
	svc := echoNode(t, ctl, name)
	c := start(t, ctl, connector.Config{})
	waitSeen(t, svc, c)
	// netstackOf: Dial goes through the node's own netstack.
	t.Run("netstack", func(t *testing.T) {
		conn, err := c.Dial(context.Background(), "tcp", name+":7")
		if err != nil {
			t.Fatalf("dial through netstack: %v", err)
		}
		conn.Close()
	})
	// dialError: gVisor says "connection was refused" as a string; Dial
	// must still return ECONNREFUSED.
	t.Run("refused", func(t *testing.T) {
		_, err := c.Dial(context.Background(), "tcp", name+":9")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial to a closed port: %v, want ECONNREFUSED (has gVisor's message changed?)", err)
		}
	})
}

// stuckWriter never returns from Write until released.
type stuckWriter struct{ release chan struct{} }

func (w stuckWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestAuditNeverBlocks: a stuck audit writer neither stalls connections
// (1100 denials through the proxy, with 1024 records queued at most) nor
// Close beyond its bound; what could not be queued is counted.
func TestAuditNeverBlocks(t *testing.T) {
	ctl := tailnettest.Shared(t)
	w := stuckWriter{release: make(chan struct{})}
	defer close(w.release)
	c := start(t, ctl, connector.Config{
		Allow:    dnsfilter.MustParse("nothing.example"),
		AuditLog: w,
		Proxy:    &connector.ProxyConfig{Listen: "127.0.0.1:0"},
	})
	for range 1100 {
		code, conn := socksConnect(t, c.ProxyAddr(), "denied.example", 80)
		conn.Close()
		if code != 2 {
			t.Fatalf("reply %#x, want 0x02", code)
		}
	}
	// The last denial is counted just after its reply is written.
	eventually(func() bool { return c.Stats().Denied >= 1100 })
	if st := c.Stats(); st.AuditDropped == 0 || st.Denied != 1100 {
		t.Errorf("Stats %+v: want 1100 denied, some records dropped", st)
	}
	t0 := time.Now()
	c.Close()
	if d := time.Since(t0); d > connector.CloseTimeout {
		t.Errorf("Close took %v with a stuck audit writer, over CloseTimeout %v", d, connector.CloseTimeout)
	}
}
