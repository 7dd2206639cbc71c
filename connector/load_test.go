package connector_test

// Load and abuse: many tunnels at once, clients that stall in the
// handshake, and clients beyond the connection limit. The proxy must stay
// correct under each, and give back every goroutine and file descriptor
// afterwards. Timings are logged, not asserted as performance.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// procSample is what the process holds at one moment.
type procSample struct {
	goroutines int
	fds        int
	rssKiB     int64 // VmRSS
	hwmKiB     int64 // VmHWM, the peak RSS so far
}

func (s procSample) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, RSS %.1f MiB", s.goroutines, s.fds, float64(s.rssKiB)/1024)
}

func sampleProc(t *testing.T) procSample {
	t.Helper()
	s, err := readProc()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readProc() (procSample, error) {
	s := procSample{goroutines: runtime.NumGoroutine()}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return s, err
	}
	s.fds = len(ents) - 1 // minus the one ReadDir itself had open
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rssKiB = n
		case "VmHWM":
			s.hwmKiB = n
		}
	}
	return s, nil
}

// waitActive waits until the proxy reports want active connections.
func waitActive(t *testing.T, c *connector.Connector, want int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for c.ProxyStats().Active != want {
		if time.Now().After(deadline) {
			t.Fatalf("proxy has %d active connections after %v, want %d", c.ProxyStats().Active, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return "none"
	}
	d := slices.Clone(l.d)
	slices.Sort(d)
	q := func(f float64) time.Duration {
		return d[min(len(d)-1, int(f*float64(len(d))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(d), q(0.5), q(0.99), d[len(d)-1].Round(10*time.Microsecond))
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestLoad1000Tunnels holds 1,000 concurrent tunnels through the proxy,
// half SOCKS5 and half HTTP CONNECT, to one echo service for 30 s, with a
// small round trip on each every 2 s (5 s under the race detector, which
// makes every packet through the two userspace stacks several times
// dearer). Not one may fail. Once they are closed, the goroutines and file
// descriptors of the process return to their baseline.
func TestLoad1000Tunnels(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 1,000 tunnels for 30 s")
	}
	const (
		tunnels = 1000
		hold    = 30 * time.Second
		opening = 50 // handshakes in flight at once
	)
	every := 2 * time.Second
	if raceEnabled() {
		every = 5 * time.Second
	}
	ctl := tailnettest.Shared(t)
	echo := ctl.StartNode(t, "load-echo", "tag:web")
	hits := echo.ServeTCP(t, 7, nil)
	c := start(t, ctl, connector.Config{Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0", MaxConns: tunnels + 200, MaxConnsPerClient: -1}}) // one uid holds them all
	waitSeen(t, echo, c)
	addr := c.ProxyAddr()

	// Warm up whatever starts lazily, then take the baseline.
	for range 3 {
		checkNewTunnels(t, addr, "load-echo", 7, "warm-up")
	}
	waitActive(t, c, 0, 5*time.Second)
	runtime.GC()
	time.Sleep(200 * time.Millisecond)
	base := sampleProc(t)
	hitsBefore := hits.Load()
	t.Logf("baseline: %v", base)

	var peak procSample
	var peakMu sync.Mutex
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for {
			s, _ := readProc()
			peakMu.Lock()
			peak.goroutines = max(peak.goroutines, s.goroutines)
			peak.fds = max(peak.fds, s.fds)
			peak.rssKiB = max(peak.rssKiB, s.rssKiB)
			peak.hwmKiB = s.hwmKiB
			peakMu.Unlock()
			select {
			case <-stopSampler:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	// Open them all.
	conns := make([]net.Conn, tunnels)
	var openLat latencies
	var openErrs atomic.Int64
	var firstErrs sync.Map
	sem := make(chan struct{}, opening)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range tunnels {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t1 := time.Now()
			conn, err := openTunnel(addr, i%2 == 0, "load-echo", 7, 30*time.Second)
			if err == nil {
				err = echoOnce(conn, fmt.Appendf(nil, "open %04d", i), 30*time.Second)
			}
			if err != nil {
				openErrs.Add(1)
				firstErrs.LoadOrStore(i%10, fmt.Errorf("tunnel %d: %w", i, err))
				if conn != nil {
					conn.Close()
				}
				return
			}
			openLat.add(time.Since(t1))
			conns[i] = conn
		})
	}
	wg.Wait()
	opened := time.Since(t0)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				conn.Close()
			}
		}
	}()
	if n := openErrs.Load(); n > 0 {
		firstErrs.Range(func(_, v any) bool { t.Log(v); return true })
		t.Fatalf("%d of %d tunnels failed to open", n, tunnels)
	}
	t.Logf("%d tunnels (half SOCKS5, half CONNECT) opened in %v, %d handshakes at a time; open+first echo: %v",
		tunnels, opened.Round(time.Millisecond), opening, &openLat)
	if st := c.ProxyStats(); st.Active != tunnels {
		t.Errorf("proxy reports %d active connections, want %d", st.Active, tunnels)
	}
	t.Logf("holding: %v", sampleProc(t))

	// Hold them, with a small round trip on each every 2 s (phases spread
	// at random), counted from the end of the last: a closed loop, so a
	// machine too busy for 500 round trips a second gets fewer, not a
	// queue that grows for the whole hold (open loop, one CI run under
	// -race beside other work had p50 6 s, p99 18.6 s and 38 round trips
	// past their 20 s deadline, with every tunnel still working).
	var rtLat latencies
	var rtErrs, rounds atomic.Int64
	holdEnd := time.Now().Add(hold)
	for i, conn := range conns {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			next := time.Now().Add(time.Duration(rng.Int64N(int64(every))))
			for seq := 0; ; seq++ {
				time.Sleep(time.Until(next))
				if time.Now().After(holdEnd) {
					return
				}
				t1 := time.Now()
				if err := echoOnce(conn, fmt.Appendf(nil, "tunnel %04d seq %03d", i, seq), 20*time.Second); err != nil {
					rtErrs.Add(1)
					firstErrs.LoadOrStore(i%10, fmt.Errorf("tunnel %d round %d: %w", i, seq, err))
					return
				}
				rtLat.add(time.Since(t1))
				rounds.Add(1)
				next = time.Now().Add(every)
			}
		})
	}
	wg.Wait()
	if n := rtErrs.Load(); n > 0 {
		firstErrs.Range(func(_, v any) bool { t.Log(v); return true })
		t.Errorf("%d tunnels failed during the %v hold", n, hold)
	}
	t.Logf("held %d tunnels for %v, a round trip on each every %v (race detector: %v): %d round trips, %d errors; round trip %v",
		tunnels, hold, every, raceEnabled(), rounds.Load(), rtErrs.Load(), &rtLat)
	if got := hits.Load() - hitsBefore; got != tunnels {
		t.Errorf("echo service accepted %d connections, want %d", got, tunnels)
	}
	if st := c.ProxyStats(); st.Active != tunnels || st.Failed != 0 {
		t.Errorf("proxy stats after the hold: %+v, want %d active, none failed", st, tunnels)
	}

	// Close them all; everything they held must be given back.
	t0 = time.Now()
	for i, conn := range conns {
		conn.Close()
		conns[i] = nil
	}
	const gMargin, fdMargin = 10, 4
	// A tunnel ends when the echo service's FIN comes back through the
	// tailnet. 1000 tunnels closing at once send a burst of FINs over
	// loopback UDP; one that is dropped is retransmitted with backoff
	// (seen once in CI, under -race beside the other packages: 8 tunnels
	// still waiting after 10 s). So the leak check allows 30 s, and logs
	// how long it took.
	const settle = 30 * time.Second
	var now procSample
	for deadline := time.Now().Add(settle); ; time.Sleep(100 * time.Millisecond) {
		now = sampleProc(t)
		if now.goroutines <= base.goroutines+gMargin && now.fds <= base.fds+fdMargin && c.ProxyStats().Active == 0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 4<<20)
			t.Fatalf("%v after closing: %v, proxy active %d; baseline %v (margins %d goroutines, %d fds)\n%s",
				settle, now, c.ProxyStats().Active, base, gMargin, fdMargin, buf[:runtime.Stack(buf, true)])
		}
	}
	close(stopSampler)
	<-samplerDone
	t.Logf("closed: back to %v within %v of closing (baseline %v)", now, time.Since(t0).Round(time.Millisecond), base)
	t.Logf("peak: %d goroutines, %d fds, RSS %.1f MiB (VmHWM %.1f MiB)",
		peak.goroutines, peak.fds, float64(peak.rssKiB)/1024, float64(peak.hwmKiB)/1024)

	// And the proxy still serves.
	checkNewTunnels(t, addr, "load-echo", 7, "after the load")
}

// stall is a client that sent the start of a handshake and stopped.
type stall struct {
	kind   string
	reply  string // what the proxy should send before closing
	conn   net.Conn
	sent   time.Time
	closed time.Duration // from sent to EOF or reset
	read   []byte
	err    error // nil: closed by the proxy; else what the read ended with
}

// TestSlowloris: 200 clients send part of a SOCKS5 greeting or of an HTTP
// request line and stall. Meanwhile legitimate clients are served at once;
// the stalled ones are dropped at the handshake timeout (1 s), each within
// 3 s, and give back their slots.
func TestSlowloris(t *testing.T) {
	const (
		handshake = time.Second
		stalled   = 200
	)
	ctl := tailnettest.Shared(t)
	svc := ctl.StartNode(t, "slow-echo", "tag:web")
	svc.ServeTCP(t, 7, nil)
	svc.ServeHTTP(t, 80, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from slow-echo") }))
	c := start(t, ctl, connector.Config{Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0", HandshakeTimeout: handshake}})
	waitSeen(t, svc, c)
	addr := c.ProxyAddr()
	before := c.ProxyStats()

	// What each kind gets before the proxy closes: SOCKS5 clients nothing;
	// an HTTP request line cut short, a 408 saying so.
	const body408 = "tsconnect: no complete request line within 1s (the handshake timeout)\n"
	timeout408 := fmt.Sprintf("HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body408), body408)
	partial := []struct{ kind, msg, reply string }{
		{"socks5 version byte only", "\x05", ""},
		{"socks5 greeting missing a method", "\x05\x02\x00", ""},
		{"http request line cut short", "GET http://slow-echo/ HT", timeout408},
		{"http CONNECT line cut short", "CONNECT slow-ec", timeout408},
	}
	stalls := make([]*stall, stalled)
	var wg sync.WaitGroup
	for i := range stalls {
		p := partial[i%len(partial)]
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		s := &stall{kind: p.kind, reply: p.reply, conn: conn, sent: time.Now()}
		if _, err := io.WriteString(conn, p.msg); err != nil {
			t.Fatal(err)
		}
		stalls[i] = s
		wg.Go(func() {
			conn.SetReadDeadline(s.sent.Add(3*handshake + time.Second))
			s.read, s.err = io.ReadAll(conn)
			s.closed = time.Since(s.sent)
		})
	}
	stalledAt := time.Now()
	t.Logf("%d clients stalled mid-handshake (%d kinds) in %v", stalled, len(partial), time.Since(stalls[0].sent).Round(time.Millisecond))

	// Served while the stalled clients hold their connections.
	var legit latencies
	t0 := time.Now()
	for i := range 5 {
		t1 := time.Now()
		checkNewTunnels(t, addr, "slow-echo", 7, fmt.Sprintf("legitimate client %d", i))
		legit.add(time.Since(t1))
		t1 = time.Now()
		status, body := rawHTTP(t, addr, "GET http://slow-echo/ HTTP/1.1\r\nHost: slow-echo\r\nConnection: close\r\n\r\n")
		if status != 200 {
			t.Errorf("GET through the proxy: %d %q", status, body)
		}
		legit.add(time.Since(t1))
	}
	legitDone := time.Since(stalledAt)
	active := c.ProxyStats().Active
	t.Logf("legitimate clients served while the others stalled: 5 SOCKS5 + 5 CONNECT tunnels and 5 GETs in %v (per tunnel pair or GET: %v); proxy had %d active connections",
		time.Since(t0).Round(time.Millisecond), &legit, active)
	if legitDone >= handshake || active < stalled {
		t.Errorf("legitimate clients done %v after the stall began, with %d connections active: not all served while the %d stalled clients were still connected",
			legitDone, active, stalled)
	}

	wg.Wait()
	var first, last time.Duration = time.Hour, 0
	byKind := map[string][]time.Duration{}
	for _, s := range stalls {
		var ne net.Error
		switch {
		case errors.As(s.err, &ne) && ne.Timeout():
			t.Errorf("%s: still connected %v after it stalled", s.kind, s.closed)
			continue
		case s.err != nil && !errors.Is(s.err, net.ErrClosed) && !strings.Contains(s.err.Error(), "reset"):
			t.Errorf("%s: read ended with %v", s.kind, s.err)
		}
		if string(s.read) != s.reply {
			t.Errorf("%s: the proxy sent %q before closing, want %q", s.kind, s.read, s.reply)
		}
		if s.closed > 3*handshake {
			t.Errorf("%s: dropped after %v, want within %v", s.kind, s.closed, 3*handshake)
		}
		if s.closed < handshake*9/10 {
			t.Errorf("%s: dropped after %v, before the %v handshake timeout", s.kind, s.closed, handshake)
		}
		first, last = min(first, s.closed), max(last, s.closed)
		byKind[s.kind] = append(byKind[s.kind], s.closed)
	}
	for _, p := range partial {
		d := byKind[p.kind]
		slices.Sort(d)
		if len(d) > 0 {
			t.Logf("%q: %d dropped after %v to %v, having been sent %q", p.kind, len(d), d[0].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), p.reply)
		}
	}
	t.Logf("all %d stalled clients dropped between %v and %v after they stalled (handshake timeout %v)",
		stalled, first.Round(time.Millisecond), last.Round(time.Millisecond), handshake)

	waitActive(t, c, 0, 5*time.Second)
	st := c.ProxyStats()
	t.Logf("proxy stats: %d failed (the stalled clients), %d allowed, %d active", st.Failed-before.Failed, st.Allowed-before.Allowed, st.Active)
	if st.Failed-before.Failed != stalled {
		t.Errorf("proxy counted %d failures, want %d (one per stalled client)", st.Failed-before.Failed, stalled)
	}
	checkNewTunnels(t, addr, "slow-echo", 7, "after the stall")
}

// TestProxyMaxConns: with MaxConns 10, the 11th client is refused cleanly
// (SOCKS5: the greeting is answered, then CONNECT gets reply 0x01 general
// failure and the connection closes; HTTP: 503 with Retry-After, then
// close), the service sees nothing of it, and once tunnels close new
// clients are admitted again.
func TestProxyMaxConns(t *testing.T) {
	const maxConns = 10
	ctl := tailnettest.Shared(t)
	svc := ctl.StartNode(t, "max-echo", "tag:web")
	hits := svc.ServeTCP(t, 7, nil)
	audit := new(syncBuffer)
	c := start(t, ctl, connector.Config{AuditLog: audit, Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0", MaxConns: maxConns, MaxConnsPerClient: -1}}) // the test's clients are all one uid
	waitSeen(t, svc, c)
	addr := c.ProxyAddr()

	open := func(i int) net.Conn {
		t.Helper()
		conn, err := openTunnel(addr, i%2 == 0, "max-echo", 7, 10*time.Second)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		if err := echoOnce(conn, fmt.Appendf(nil, "tunnel %d", i), 10*time.Second); err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		return conn
	}
	held := make([]net.Conn, maxConns)
	for i := range held {
		held[i] = open(i)
		defer func() { held[i].Close() }()
	}
	waitActive(t, c, maxConns, 5*time.Second)
	hitsFull := hits.Load()

	refusedSOCKS := func() {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte{5, 1, 0})
		var greet [2]byte
		if _, err := io.ReadFull(conn, greet[:]); err != nil || greet != [2]byte{5, 0} {
			t.Fatalf("11th SOCKS5 client: greeting answered % x, %v; want 05 00", greet, err)
		}
		req := []byte{5, 1, 0, 3, byte(len("max-echo"))}
		req = append(req, "max-echo"...)
		conn.Write(binary.BigEndian.AppendUint16(req, 7))
		rest, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("11th SOCKS5 client: reading the reply: %v (got % x)", err, rest)
		}
		if want := []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}; !bytes.Equal(rest, want) {
			t.Fatalf("11th SOCKS5 client: got % x then EOF; want % x (general failure) then EOF", rest, want)
		}
	}
	refusedHTTP := func(req, what string) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, req)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("11th %s client: %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		wantBody := fmt.Sprintf("tsconnect: %d connections in use (Config.MaxConns); try again later\n", maxConns)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !resp.Close || string(body) != wantBody {
			t.Fatalf("11th %s client: %s, Retry-After %q, close %v, body %q; want 503, Retry-After 1, close, %q",
				what, resp.Status, resp.Header.Get("Retry-After"), resp.Close, body, wantBody)
		}
		if extra, err := io.ReadAll(br); err != nil || len(extra) > 0 {
			t.Fatalf("11th %s client: after the 503: %q, %v; want EOF", what, extra, err)
		}
	}
	t0 := time.Now()
	refusedSOCKS()
	t.Logf("11th SOCKS5 client: greeting 05 00, then reply 05 01 (general failure) and EOF, in %v", time.Since(t0).Round(time.Microsecond))
	t0 = time.Now()
	refusedHTTP("CONNECT max-echo:7 HTTP/1.1\r\nHost: max-echo:7\r\n\r\n", "CONNECT")
	refusedHTTP("GET http://max-echo:7/ HTTP/1.1\r\nHost: max-echo:7\r\n\r\n", "GET")
	t.Logf("11th HTTP clients (CONNECT, GET): 503 with Retry-After: 1 and the limit in the body, then EOF, in %v", time.Since(t0).Round(time.Microsecond))

	if n := hits.Load() - hitsFull; n != 0 {
		t.Errorf("the service saw %d connections from refused clients", n)
	}
	if st := c.ProxyStats(); st.Refused != 3 || st.Active != maxConns {
		t.Errorf("stats %+v: want 3 refused, %d active", st, maxConns)
	}
	for i, conn := range held {
		if err := echoOnce(conn, fmt.Appendf(nil, "held %d", i), 10*time.Second); err != nil {
			t.Errorf("held tunnel %d after the refusals: %v", i, err)
		}
	}

	// Three close: three are admitted, and the next is refused again.
	for i := range 3 {
		held[i].Close()
	}
	t0 = time.Now()
	waitActive(t, c, maxConns-3, 5*time.Second)
	t.Logf("3 tunnels closed: their slots were free %v later", time.Since(t0).Round(time.Millisecond))
	for i := range 3 {
		held[i] = open(i)
	}
	waitActive(t, c, maxConns, 5*time.Second)
	refusedSOCKS()

	// All close: a full set is admitted again.
	for _, conn := range held {
		conn.Close()
	}
	waitActive(t, c, 0, 5*time.Second)
	for i := range held {
		held[i] = open(i)
	}
	waitActive(t, c, maxConns, 5*time.Second)
	st := c.ProxyStats()
	t.Logf("after everything closed, %d new tunnels admitted; stats: %d accepted, %d allowed, %d refused", maxConns, st.Accepted, st.Allowed, st.Refused)
	if st.Refused != 4 {
		t.Errorf("refused %d, want 4", st.Refused)
	}

	// One audit line per refusal (written asynchronously).
	var refusals []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		refusals = refusals[:0]
		for _, line := range strings.Split(audit.String(), "\n") {
			if strings.Contains(line, "too many connections") {
				refusals = append(refusals, line)
			}
		}
		if len(refusals) >= 4 || time.Now().After(deadline) {
			break
		}
	}
	if len(refusals) != 4 {
		t.Errorf("audit has %d refusal lines, want 4:\n%s", len(refusals), audit.String())
	}
	for _, line := range refusals {
		if !strings.Contains(line, `"decision":"error"`) || !strings.Contains(line, `"host":"max-echo"`) {
			t.Errorf("audit line of a refusal: %s", line)
		}
	}
	if len(refusals) > 0 {
		t.Logf("audit of a refusal: %s", refusals[0])
	}
}

// openTunnel opens a tunnel to host:port through the proxy at addr, over
// SOCKS5 or HTTP CONNECT, and fails unless the proxy grants it.
func openTunnel(addr string, socks bool, host string, port uint16, timeout time.Duration) (net.Conn, error) {
	if socks {
		conn, code, err := tunnelSOCKS(addr, host, port, timeout)
		if err == nil && code != 0 {
			return nil, fmt.Errorf("SOCKS5 reply %#x", code)
		}
		return conn, err
	}
	conn, status, err := tunnelCONNECT(addr, fmt.Sprintf("%s:%d", host, port), timeout)
	if err == nil && status != 200 {
		return nil, fmt.Errorf("CONNECT status %d", status)
	}
	return conn, err
}
