package connector_test

// Faults: the control plane restarting under a live session, DERP being
// unavailable, and a service node vanishing mid-transfer. In each, the
// failure must surface as a clear error where it happens, nothing already
// carried may be lost, and the proxy must keep serving what it still can.
//
// The fourth fault of the brief, a control plane that is down at start, is
// TestUnreachableControlNamesURL (connector_test.go): Start fails with a
// KindUnreachable StartError naming the URL at the ready timeout.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// tunnelSOCKS opens a SOCKS5 CONNECT tunnel through the proxy at proxyAddr
// to host:port. It returns the reply code; conn is nil unless the code is
// 0 (succeeded). Unlike socksConnect it never calls t.Fatal, so goroutines
// may use it.
func tunnelSOCKS(proxyAddr, host string, port uint16, timeout time.Duration) (conn net.Conn, code byte, err error) {
	c, err := net.DialTimeout("tcp", proxyAddr, timeout)
	if err != nil {
		return nil, 0xff, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	req := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))} // greeting and request at once
	req = append(req, host...)
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, 0xff, err
	}
	var rep [2 + 10]byte // method selection, then a reply with an IPv4 BND.ADDR
	if _, err := io.ReadFull(c, rep[:2+4]); err != nil {
		c.Close()
		return nil, 0xff, fmt.Errorf("SOCKS5 reply: %w", err)
	}
	if rep[0] != 5 || rep[1] != 0 || rep[2] != 5 {
		c.Close()
		return nil, 0xff, fmt.Errorf("SOCKS5: unexpected reply % x", rep[:6])
	}
	alen := 4
	switch rep[5] {
	case 1:
	case 4:
		alen = 16
	default:
		c.Close()
		return nil, 0xff, fmt.Errorf("SOCKS5: reply address type %d", rep[5])
	}
	if _, err := io.ReadFull(c, make([]byte, alen+2)); err != nil {
		c.Close()
		return nil, 0xff, fmt.Errorf("SOCKS5 reply address: %w", err)
	}
	if rep[3] != 0 {
		c.Close()
		return nil, rep[3], nil
	}
	c.SetDeadline(time.Time{})
	return c, 0, nil
}

// tunnelCONNECT opens an HTTP CONNECT tunnel through the proxy. It returns
// the status code; conn is nil unless it is 200.
func tunnelCONNECT(proxyAddr, target string, timeout time.Duration) (net.Conn, int, error) {
	c, err := net.DialTimeout("tcp", proxyAddr, timeout)
	if err != nil {
		return nil, 0, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		c.Close()
		return nil, 0, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("CONNECT response: %w", err)
	}
	if resp.StatusCode != 200 {
		c.Close()
		return nil, resp.StatusCode, nil
	}
	c.SetDeadline(time.Time{})
	return &bufConn{Conn: c, br: br}, 200, nil
}

// bufConn reads first what the CONNECT response parser buffered.
type bufConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.br.Read(p) }

func (c *bufConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// echoOnce writes msg and reads it back within timeout.
func echoOnce(c net.Conn, msg []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo mismatch: sent %q, got %q", msg, got)
	}
	return nil
}

// checkNewTunnels opens a SOCKS5 and an HTTP CONNECT tunnel to an echo
// service, does one round trip on each and closes them. It returns how
// long the slower took.
func checkNewTunnels(t *testing.T, proxyAddr, host string, port uint16, what string) time.Duration {
	t.Helper()
	var slowest time.Duration
	t0 := time.Now()
	c, code, err := tunnelSOCKS(proxyAddr, host, port, 10*time.Second)
	if err != nil || code != 0 {
		t.Errorf("%s: new SOCKS5 tunnel to %s:%d: reply %#x, %v", what, host, port, code, err)
	} else {
		if err := echoOnce(c, []byte("socks5 "+what), 10*time.Second); err != nil {
			t.Errorf("%s: SOCKS5 round trip: %v", what, err)
		}
		c.Close()
		slowest = time.Since(t0)
	}
	t0 = time.Now()
	c, status, err := tunnelCONNECT(proxyAddr, net.JoinHostPort(host, fmt.Sprint(port)), 10*time.Second)
	if err != nil || status != 200 {
		t.Errorf("%s: new CONNECT tunnel to %s:%d: status %d, %v", what, host, port, status, err)
	} else {
		if err := echoOnce(c, []byte("connect "+what), 10*time.Second); err != nil {
			t.Errorf("%s: CONNECT round trip: %v", what, err)
		}
		c.Close()
		slowest = max(slowest, time.Since(t0))
	}
	return slowest
}

// flow keeps a tunnel busy with round trips until stopped, and records
// the first error.
type flow struct {
	rounds atomic.Int64
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	err      error
	errAt    time.Time
	maxRound time.Duration
}

func startFlow(c net.Conn, every time.Duration) *flow {
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		rng := rand.New(rand.NewPCG(1, 2))
		msg := make([]byte, 1024)
		for i := 0; ; i++ {
			for j := range msg {
				msg[j] = byte(rng.Uint32())
			}
			t0 := time.Now()
			if err := echoOnce(c, msg, 10*time.Second); err != nil {
				f.mu.Lock()
				f.err, f.errAt = fmt.Errorf("round %d: %w", i, err), time.Now()
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			f.maxRound = max(f.maxRound, time.Since(t0))
			f.mu.Unlock()
			f.rounds.Add(1)
			select {
			case <-f.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return f
}

func (f *flow) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *flow) end() (rounds int64, slowest time.Duration, err error) {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rounds.Load(), f.maxRound, f.err
}

// waitRounds waits until the flow has done n more round trips.
func (f *flow) waitRounds(t *testing.T, n int64, what string) {
	t.Helper()
	want := f.rounds.Load() + n
	deadline := time.Now().Add(20 * time.Second)
	for f.rounds.Load() < want {
		if err := f.failure(); err != nil {
			t.Fatalf("%s: the long-lived tunnel failed: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the long-lived tunnel made %d of %d round trips in 20s", what, f.rounds.Load()-want+n, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func selfIP(t *testing.T, c *connector.Connector) netip.Addr {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.IPv4
}

// TestControlRestartMidSession: Headscale (control and its embedded DERP)
// is killed while a tunnel is open and restarted on the same ports and
// database. The open tunnel keeps flowing, new connections to a known peer
// work while the control plane is down (the network map is cached), new
// connections work after the restart, and Close still removes the node.
// A connector closed while the control plane is down cannot log out: its
// Close fails, bounded, with an error that says so.
func TestControlRestartMidSession(t *testing.T) {
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{})
	echo := ctl.StartNode(t, "rs-echo", "tag:web")
	echoHits := echo.ServeTCP(t, 7, nil)
	c := start(t, ctl, connector.Config{DialTimeout: 5 * time.Second, Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"}})
	orphan := start(t, ctl, connector.Config{}) // closed during the outage
	waitSeen(t, echo, c)
	addr := c.ProxyAddr()
	if p, err := echo.PathTo(selfIP(t, c), 10*time.Second); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("rs-echo -> connector: %v", p)
	}

	tun, code, err := tunnelSOCKS(addr, "rs-echo", 7, 10*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("long-lived SOCKS5 tunnel: reply %#x, %v", code, err)
	}
	defer tun.Close()
	f := startFlow(tun, 20*time.Millisecond)
	f.waitRounds(t, 10, "before the outage")

	tDown := time.Now()
	if err := ctl.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("headscale killed after %d round trips on the long-lived tunnel", f.rounds.Load())
	if _, err := ctl.Nodes(); err == nil {
		t.Fatal("headscale still answers after Stop")
	}

	// The control plane is down. The data plane must not care.
	f.waitRounds(t, 50, "control plane down")
	took := checkNewTunnels(t, addr, "rs-echo", 7, "control plane down")
	t.Logf("control plane down: new SOCKS5 and CONNECT tunnels to the known peer worked (slowest %v)", took.Round(time.Millisecond))
	conn, err := c.Dial(context.Background(), "tcp", "rs-echo.tailnet.test:7")
	if err != nil {
		t.Errorf("control plane down: in-process Dial: %v", err)
	} else {
		if err := echoOnce(conn, []byte("in-process"), 10*time.Second); err != nil {
			t.Errorf("control plane down: in-process round trip: %v", err)
		}
		conn.Close()
	}
	if st, err := c.Status(context.Background()); err != nil {
		t.Errorf("Status while the control plane is down: %v", err)
	} else {
		t.Logf("control plane down: connector state %s, %d peers", st.State, st.Peers)
	}
	// Closing a connector now cannot log it out; Close must still return,
	// bounded by CloseTimeout (of which logging out takes at most 3 s), and say
	// why.
	t0 := time.Now()
	orphanErr := orphan.Close()
	orphanClose := time.Since(t0)
	t.Logf("control plane down: Close of a second connector took %v and returned: %v", orphanClose.Round(time.Millisecond), orphanErr)
	if orphanErr == nil || !strings.Contains(orphanErr.Error(), "logging out") {
		t.Errorf("Close with the control plane down returned %v, want a logout error", orphanErr)
	}
	if orphanClose > connector.CloseTimeout+2*time.Second {
		t.Errorf("Close with the control plane down took %v, want it bounded by CloseTimeout (%v)", orphanClose, connector.CloseTimeout)
	}
	// Keep the outage at least 5 s long, well past the clients' first
	// reconnect attempts, so they are in backoff when it ends.
	time.Sleep(time.Until(tDown.Add(5 * time.Second)))
	f.waitRounds(t, 10, "control plane down, late")
	downRounds := f.rounds.Load()

	tUp := time.Now()
	if err := ctl.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("headscale restarted after %v down (healthy %v after Restart began); %d round trips so far",
		tUp.Sub(tDown).Round(time.Millisecond), time.Since(tUp).Round(time.Millisecond), downRounds)
	if n, ok, err := ctl.FindNode(c.Name()); err != nil || !ok {
		t.Fatalf("connector not listed after the restart (ok %v): %v", ok, err)
	} else {
		t.Logf("right after the restart the connector is listed, online=%v", n.Online)
	}
	if _, ok, _ := ctl.FindNode(orphan.Name()); ok {
		t.Logf("the connector closed during the outage is still listed (it could not log out; the ephemeral inactivity timeout removes it)")
	}

	f.waitRounds(t, 10, "after the restart")
	took = checkNewTunnels(t, addr, "rs-echo", 7, "after the restart")
	t.Logf("after the restart: new tunnels worked (slowest %v)", took.Round(time.Millisecond))

	rounds, slowest, err := f.end()
	if err != nil {
		t.Errorf("the long-lived tunnel failed: %v", err)
	}
	t.Logf("long-lived tunnel: %d round trips of 1 KiB, none failed, slowest %v", rounds, slowest.Round(time.Millisecond))
	if err := echoOnce(tun, []byte("still here"), 10*time.Second); err != nil {
		t.Errorf("long-lived tunnel after the outage: %v", err)
	}
	tun.Close()
	if echoHits.Load() < 6 {
		t.Errorf("echo service accepted %d connections, want at least 6", echoHits.Load())
	}

	// Close right away, without waiting for the connector's map poll to
	// come back from its backoff: logging out opens its own request.
	t0 = time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close after the restart: %v", err)
	}
	gone, err := ctl.WaitGone(c.Name(), t0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the restart: Close took %v; node gone from headscale nodes list %v after Close began",
		time.Since(t0).Round(time.Millisecond), gone.Round(time.Millisecond))

	// How long the service node takes to come back online at the control
	// plane (its map poll retries with backoff).
	for {
		n, ok, err := ctl.FindNode("rs-echo")
		if err != nil || !ok {
			t.Fatalf("rs-echo not listed (ok %v): %v", ok, err)
		}
		if n.Online {
			t.Logf("rs-echo back online at the control plane %v after the restart", time.Since(tUp).Round(time.Millisecond))
			break
		}
		if time.Since(tUp) > 90*time.Second {
			t.Fatalf("rs-echo not back online 90s after the restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDERPUnavailable: the control plane hands out a DERP map whose only
// region (DERP and STUN on 127.0.0.1:9) has nothing listening, and the
// embedded DERP server is off. The connector still joins, and reaches a
// peer on the direct path: loopback UDP between the two nodes.
func TestDERPUnavailable(t *testing.T) {
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{DERPDown: true})
	t0 := time.Now()
	echo := ctl.StartNode(t, "nd-echo", "tag:web")
	echo.ServeTCP(t, 7, nil)
	t.Logf("service node joined in %v with DERP down", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	c := start(t, ctl, connector.Config{DialTimeout: 5 * time.Second, Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"}})
	t.Logf("connector joined in %v with DERP down", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	waitSeen(t, echo, c)
	t.Logf("first packet through WireGuard (TSMP ping) after %v", time.Since(t0).Round(time.Millisecond))
	p, err := echo.PathTo(selfIP(t, c), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nd-echo -> connector: %v (peer's home DERP %q)", p, p.Home)
	if !p.Direct() {
		t.Errorf("path %v: want direct, with no DERP to relay", p)
	}

	t0 = time.Now()
	took := checkNewTunnels(t, c.ProxyAddr(), "nd-echo", 7, "DERP down")
	t.Logf("DERP down: SOCKS5 and CONNECT round trips worked (slowest %v)", took.Round(time.Millisecond))
	conn, err := c.Dial(context.Background(), "tcp", "nd-echo:7")
	if err != nil {
		t.Fatalf("in-process Dial: %v", err)
	}
	defer conn.Close()
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if err := echoOnce(conn, big, 20*time.Second); err != nil {
		t.Errorf("1 MiB round trip: %v", err)
	}
	t.Logf("1 MiB echoed over the direct path in %v", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	gone, err := ctl.WaitGone(c.Name(), t0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node gone %v after Close", gone.Round(time.Millisecond))
}

// stream is deterministic pseudo-random data, so a receiver can check
// every byte without keeping a copy.
func stream(seed uint64, off, n int) []byte {
	// Chunks of 4 KiB, each from its own generator, so any aligned range
	// can be produced on its own.
	const chunk = 4096
	out := make([]byte, 0, n)
	for c := off / chunk; len(out) < n; c++ {
		rng := rand.New(rand.NewPCG(seed, uint64(c)))
		buf := make([]byte, chunk)
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		start := 0
		if c == off/chunk {
			start = off % chunk
		}
		out = append(out, buf[start:min(chunk, start+n-len(out))]...)
	}
	return out
}

// transfer sends size bytes of stream(seed) through an echo tunnel and
// checks every byte that comes back. pause, if set, is called once half
// the data is written; the writer waits for it to return.
type transfer struct {
	name     string
	received atomic.Int64
	done     chan struct{} // closed when the receiver ends; then err and at are set
	err      error         // the receiver's error; nil: all bytes back, correct, then EOF
	at       time.Time
	wdone    chan struct{} // closed when the writer ends; then writeErr is set
	writeErr error
}

// writerErr waits up to timeout for the writer to end.
func (tr *transfer) writerErr(timeout time.Duration) error {
	select {
	case <-tr.wdone:
		return tr.writeErr
	case <-time.After(timeout):
		return fmt.Errorf("writer still blocked after %v", timeout)
	}
}

func startTransfer(name string, c net.Conn, seed uint64, size int, readTimeout time.Duration, pause func()) *transfer {
	tr := &transfer{name: name, done: make(chan struct{}), wdone: make(chan struct{})}
	const chunk = 32 << 10
	go func() { // writer
		defer close(tr.wdone)
		for off := 0; off < size; off += chunk {
			if pause != nil && off >= size/2 {
				pause()
				pause = nil
			}
			if _, err := c.Write(stream(seed, off, min(chunk, size-off))); err != nil {
				tr.writeErr = err
				return
			}
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	go func() { // reader
		defer close(tr.done)
		defer func() { tr.at = time.Now() }()
		buf := make([]byte, chunk)
		off := 0
		for off < size {
			c.SetReadDeadline(time.Now().Add(readTimeout))
			n, err := c.Read(buf)
			if n > 0 {
				if want := stream(seed, off, n); !bytes.Equal(buf[:n], want) {
					tr.err = fmt.Errorf("byte mismatch in [%d, %d)", off, off+n)
					return
				}
				off += n
				tr.received.Store(int64(off))
			}
			if err != nil {
				tr.err = fmt.Errorf("after %d of %d bytes: %w", off, size, err)
				return
			}
		}
		c.SetReadDeadline(time.Now().Add(readTimeout))
		if n, err := c.Read(buf); err != io.EOF {
			tr.err = fmt.Errorf("after all %d bytes: read %d more, %v; want EOF", size, n, err)
		}
	}()
	return tr
}

func waitBytes(t *testing.T, tr *transfer, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for tr.received.Load() < n {
		select {
		case <-tr.done:
			t.Fatalf("transfer %s ended early: %v", tr.name, tr.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer %s: %d bytes after 30s", tr.name, tr.received.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nodeName returns base the first time this process asks for it, and
// base-2, base-3… after: the shared control plane outlives a test, and
// under go test -count=N a node of an earlier run may still hold the name.
func nodeName(base string) string {
	nodeNamesMu.Lock()
	defer nodeNamesMu.Unlock()
	nodeNames[base]++
	if n := nodeNames[base]; n > 1 {
		return fmt.Sprintf("%s-%d", base, n)
	}
	return base
}

var (
	nodeNamesMu sync.Mutex
	nodeNames   = map[string]int{}
)

// echoNode starts a tag:web service node that echoes on port 7.
func echoNode(t *testing.T, ctl *tailnettest.Control, name string) *tailnettest.Node {
	n := ctl.StartNode(t, name, "tag:web")
	n.ServeTCP(t, 7, nil)
	return n
}

// TestServiceNodeGoneMidTransfer: two transfers run through the proxy, one
// to each of two service nodes, and node A leaves mid-transfer. A's client
// gets an error within a bounded time; B's transfer completes with every
// byte correct; new tunnels to B keep working, and a new tunnel to A fails
// with a SOCKS5 error reply within the dial timeout.
func TestServiceNodeGoneMidTransfer(t *testing.T) {
	ctl := tailnettest.Shared(t)
	aName, bName := nodeName("gone-a"), nodeName("gone-b")
	a, b := echoNode(t, ctl, aName), echoNode(t, ctl, bName)
	const idle = 3 * time.Second
	const dialTimeout = 3 * time.Second
	audit := new(syncBuffer)
	c := start(t, ctl, connector.Config{DialTimeout: dialTimeout, IdleTimeout: idle, AuditLog: audit,
		Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"}})
	waitSeen(t, a, c)
	waitSeen(t, b, c)
	addr := c.ProxyAddr()

	ca, code, err := tunnelSOCKS(addr, aName, 7, 10*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("tunnel to gone-a: reply %#x, %v", code, err)
	}
	defer ca.Close()
	cb, status, err := tunnelCONNECT(addr, bName+":7", 10*time.Second)
	if err != nil || status != 200 {
		t.Fatalf("tunnel to gone-b: status %d, %v", status, err)
	}
	defer cb.Close()

	const size = 8 << 20
	aClosed := make(chan struct{})
	// A's client reads with a generous deadline: the error it gets must
	// come from the proxy or the tailnet, well before it.
	const readDeadline = 30 * time.Second
	// Both writers pause at half until A is gone: A's transfer cannot
	// finish before its node leaves, B's must finish after.
	ta := startTransfer("gone-a", ca, 1, size, readDeadline, func() { <-aClosed })
	tb := startTransfer("gone-b", cb, 2, size, readDeadline, func() { <-aClosed })
	waitBytes(t, ta, 1<<20)
	waitBytes(t, tb, 1<<20)

	t0 := time.Now()
	a.Close()
	close(aClosed)
	t.Logf("gone-a closed after %d bytes of its transfer came back (Close took %v); gone-b at %d bytes; both paused at half",
		ta.received.Load(), time.Since(t0).Round(time.Millisecond), tb.received.Load())

	select {
	case <-ta.done:
	case <-time.After(readDeadline + 5*time.Second):
		t.Fatal("gone-a's client neither failed nor finished")
	}
	aTook := ta.at.Sub(t0)
	t.Logf("gone-a's client: %v, %v after the node closed (its writer: %v)", ta.err, aTook.Round(time.Millisecond), ta.writerErr(5*time.Second))
	var ne net.Error
	switch {
	case ta.err == nil:
		t.Error("gone-a's transfer succeeded after its node left")
	case errors.As(ta.err, &ne) && ne.Timeout():
		t.Errorf("gone-a's client only noticed at its own %v read deadline: the proxy did not end the tunnel", readDeadline)
	}
	if aTook > idle+5*time.Second {
		t.Errorf("gone-a's client got its error %v after the node left, want within the %v idle timeout plus slack", aTook, idle)
	}

	select {
	case <-tb.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("gone-b's transfer did not finish in 60s: %d bytes", tb.received.Load())
	}
	if werr := tb.writerErr(5 * time.Second); tb.err != nil || werr != nil {
		t.Fatalf("gone-b's transfer: %v (writer: %v)", tb.err, werr)
	}
	t.Logf("gone-b's transfer: all %d bytes back, each correct, then EOF, %v after gone-a left", size, tb.at.Sub(t0).Round(time.Millisecond))

	for i := range 3 {
		took := checkNewTunnels(t, addr, bName, 7, fmt.Sprintf("gone-b after gone-a left, round %d", i))
		t.Logf("new tunnels to gone-b, round %d: slowest %v", i, took.Round(time.Millisecond))
	}

	// A new tunnel to the vanished node: a clean SOCKS5 error reply within
	// the dial timeout.
	t1 := time.Now()
	conn, code, err := tunnelSOCKS(addr, aName, 7, dialTimeout+5*time.Second)
	took := time.Since(t1)
	if conn != nil {
		conn.Close()
	}
	t.Logf("new SOCKS5 tunnel to gone-a: reply %#x, err %v, after %v", code, err, took.Round(time.Millisecond))
	if err != nil || code == 0 {
		t.Errorf("new SOCKS5 tunnel to gone-a: reply %#x, %v; want an error reply", code, err)
	}
	if took > dialTimeout+2*time.Second {
		t.Errorf("new tunnel to gone-a failed after %v, want within the %v dial timeout", took, dialTimeout)
	}
	t1 = time.Now()
	conn, status, err = tunnelCONNECT(addr, aName+":7", dialTimeout+5*time.Second)
	took = time.Since(t1)
	if conn != nil {
		conn.Close()
	}
	t.Logf("new CONNECT tunnel to gone-a: status %d, err %v, after %v", status, err, took.Round(time.Millisecond))
	if err != nil || status/100 != 5 {
		t.Errorf("new CONNECT to gone-a: status %d, %v; want a 5xx", status, err)
	}

	// The audit log says what happened to the tunnel to A.
	for _, line := range strings.Split(strings.TrimSpace(audit.String()), "\n") {
		if strings.Contains(line, `"host":"`+aName+`.`) {
			t.Logf("audit: %s", line)
		}
	}
}

// TestCloseManyTunnelsControlDown: a connector holding more than 512
// tunnels is closed while the control plane is down, so it cannot log out.
// Close must still return, bounded, with the logout error. (tsnet's Close
// used to block forever here: see the comment in Connector.Close.)
func TestCloseManyTunnelsControlDown(t *testing.T) {
	const tunnels = 600
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{})
	echo := ctl.StartNode(t, "many-echo", "tag:web")
	echo.ServeTCP(t, 7, nil)
	c := start(t, ctl, connector.Config{Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"}})
	waitSeen(t, echo, c)
	t0 := time.Now()
	for i := range tunnels {
		conn, code, err := tunnelSOCKS(c.ProxyAddr(), "many-echo", 7, 10*time.Second)
		if err != nil || code != 0 {
			t.Fatalf("tunnel %d: reply %#x, %v", i, code, err)
		}
		defer conn.Close()
		if err := echoOnce(conn, []byte("x"), 10*time.Second); err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
	}
	t.Logf("%d tunnels open in %v", tunnels, time.Since(t0).Round(time.Millisecond))
	if err := ctl.Stop(); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	t0 = time.Now()
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		took := time.Since(t0)
		t.Logf("Close with %d tunnels and the control plane down: %v after %v", tunnels, err, took.Round(time.Millisecond))
		if err == nil || !strings.Contains(err.Error(), "logging out") {
			t.Errorf("Close returned %v, want the logout error", err)
		}
		if took > connector.CloseTimeout+2*time.Second {
			t.Errorf("Close took %v, want it bounded by CloseTimeout (%v)", took, connector.CloseTimeout)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Close with %d tunnels and the control plane down still blocked after 30s", tunnels)
	}
}

// TestPeerRemovedEndsTunnels: when a peer leaves the network map (here an
// admin deletes it; also an ephemeral node reaped after a crash, a node
// key that expired, or an ACL change that hides it), WireGuard drops it
// and its tunnels carry nothing more. They must end at once, not at the
// idle timeout (1 h by default, kept here): the proxied client and the
// in-process Dial's caller both see the connection close. A tunnel to
// another peer is unaffected.
func TestPeerRemovedEndsTunnels(t *testing.T) {
	ctl := tailnettest.Shared(t)
	goneName, stayName := nodeName("rm-gone"), nodeName("rm-stay")
	gone, stay := echoNode(t, ctl, goneName), echoNode(t, ctl, stayName)
	audit := new(syncBuffer)
	c := start(t, ctl, connector.Config{AuditLog: audit, Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"}})
	waitSeen(t, gone, c)
	waitSeen(t, stay, c)

	viaProxy, code, err := tunnelSOCKS(c.ProxyAddr(), goneName, 7, 10*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("tunnel to rm-gone: reply %#x, %v", code, err)
	}
	defer viaProxy.Close()
	direct, err := c.Dial(context.Background(), "tcp", goneName+":7")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	other, code, err := tunnelSOCKS(c.ProxyAddr(), stayName, 7, 10*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("tunnel to rm-stay: reply %#x, %v", code, err)
	}
	defer other.Close()
	for _, conn := range []net.Conn{viaProxy, direct, other} {
		if err := echoOnce(conn, []byte("before"), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	n, ok, err := ctl.FindNode(goneName)
	if err != nil || !ok {
		t.Fatalf("rm-gone not listed (%v): %v", ok, err)
	}
	t0 := time.Now()
	if out, err := ctl.Run("nodes", "delete", "--identifier", n.ID.String(), "--force"); err != nil {
		t.Fatalf("headscale nodes delete: %v: %s", err, out)
	}
	const within = 10 * time.Second
	for name, conn := range map[string]net.Conn{"via the proxy": viaProxy, "in-process Dial": direct} {
		conn.SetReadDeadline(time.Now().Add(2 * within))
		_, err := io.Copy(io.Discard, conn)
		took := time.Since(t0)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("tunnel %s to the deleted peer still open %v after the deletion", name, took.Round(time.Millisecond))
			continue
		}
		t.Logf("tunnel %s to the deleted peer ended %v after the deletion (%v)", name, took.Round(time.Millisecond), err)
		if took > within {
			t.Errorf("tunnel %s ended only after %v, want within %v", name, took, within)
		}
		var pl *connector.PeerLeftError
		if conn == direct && !errors.As(err, &pl) {
			t.Errorf("in-process Dial's conn: read error %v, want a *connector.PeerLeftError", err)
		}
	}
	// The proxy's audit line for that tunnel says why it ended.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(audit.String(), "left the tailnet") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(audit.String(), "left the tailnet") {
		t.Errorf("no audit line says the peer left the tailnet:\n%s", audit.String())
	}
	if err := echoOnce(other, []byte("after"), 10*time.Second); err != nil {
		t.Errorf("tunnel to rm-stay after rm-gone was deleted: %v", err)
	}
}

// TestPeerJoinedLater: a service node that joins after the connector is
// reachable by name through Dial and the proxy as soon as the control
// plane tells the connector of it, and Status counts it. (tailscale sends
// a watcher the whole network map only when the watch starts; the
// connector must read it again on each change.)
func TestPeerJoinedLater(t *testing.T) {
	ctl := tailnettest.Shared(t)
	c := start(t, ctl, connector.Config{Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"}})
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := st.Peers
	late := nodeName("late-peer")
	echoNode(t, ctl, late)
	t0 := time.Now()
	for {
		conn, err := c.Dial(context.Background(), "tcp", late+":7")
		if err == nil {
			err = echoOnce(conn, []byte("hello"), 10*time.Second)
			conn.Close()
			if err != nil {
				t.Fatalf("echo through Dial: %v", err)
			}
			t.Logf("late-peer reachable through Dial %v after it joined", time.Since(t0).Round(time.Millisecond))
			break
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("late-peer still unreachable 10s after it joined: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkNewTunnels(t, c.ProxyAddr(), late, 7, "peer that joined later")
	if st, err = c.Status(context.Background()); err != nil || st.Peers <= before {
		t.Errorf("Status: %d peers (%v), want more than the %d before late-peer joined", st.Peers, err, before)
	}
}
