package socks

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// denyError is a policy denial as the dnsfilter package reports one: the
// rule that decided, if one did, and a reason.
type denyError struct{ rule, reason string }

func (e *denyError) Error() string        { return "denied by " + e.rule + e.reason }
func (e *denyError) Denied() bool         { return true }
func (e *denyError) RuleName() string     { return e.rule }
func (e *denyError) DenialReason() string { return e.reason }

// reasonNoMatch is dnsfilter's reason when no rule matched (and none is
// named).
const reasonNoMatch = "no rule matches"

// fakeNet is the tests' Config.Dial and Config.Check: made-up names map to
// loopback listeners, and a few names fail in particular ways.
type fakeNet struct {
	mu      sync.Mutex
	hosts   map[string]string // "name" or "name:port" -> real 127.0.0.1 address
	deny    map[string]string // name -> rule that Check denies it by
	dialed  []string          // addr passed to Dial
	checked []string          // host:port passed to Check
}

func newFakeNet() *fakeNet {
	return &fakeNet{hosts: map[string]string{}, deny: map[string]string{}}
}

func (f *fakeNet) add(name, addr string) {
	f.mu.Lock()
	f.hosts[name] = addr
	f.mu.Unlock()
}

func (f *fakeNet) Check(host string, port uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked = append(f.checked, joinHostPort(host, port))
	if rule, ok := f.deny[host]; ok {
		if rule == reasonNoMatch {
			return fmt.Errorf("dnsfilter: %w", &denyError{reason: rule})
		}
		return fmt.Errorf("dnsfilter: %w", &denyError{rule: rule, reason: "port " + strconv.Itoa(int(port)) + " not in the rule"})
	}
	return nil
}

func (f *fakeNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, addr)
	host, _, _ := net.SplitHostPort(addr)
	real, ok := f.hosts[addr]
	if !ok {
		real, ok = f.hosts[host]
	}
	f.mu.Unlock()
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", err)}
	}
	switch host {
	case "unreach.test":
		return nil, opErr(syscall.EHOSTUNREACH)
	case "netunreach.test":
		return nil, opErr(syscall.ENETUNREACH)
	case "slow.test":
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	case "late-deny.test":
		return nil, fmt.Errorf("connector: resolved to 10.0.0.1: %w", &denyError{rule: "no route"})
	case "weird.test":
		return nil, errors.New("something else broke")
	}
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, real)
}

func (f *fakeNet) dials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dialed...)
}

func (f *fakeNet) checks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.checked...)
}

// tcpServer is a raw TCP server on 127.0.0.1 that runs handle per
// connection and counts them.
type tcpServer struct {
	ln      net.Listener
	accepts atomic.Int64
	wg      sync.WaitGroup
}

func newTCPServer(t testing.TB, handle func(net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &tcpServer{ln: ln}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.accepts.Add(1)
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ts.wg.Wait()
	})
	return ts
}

func (ts *tcpServer) addr() string { return ts.ln.Addr().String() }

// echo copies what it reads back until EOF, then closes.
func echo(c net.Conn) { io.Copy(c, c) }

// closedPort returns a 127.0.0.1 address that refuses connections until
// the test ends: a socket bound there that never listens holds the port,
// so no other process can take it meanwhile (closing a listener and
// hoping the port stays free let a busy CI machine hand it to another
// test, and the "refused" dial then hung).
func closedPort(t testing.TB) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// lockedBuffer is an audit writer the test can read while the server runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// record is a Config.Audit writing each record as a JSON line, as the
// connector does.
func (l *lockedBuffer) record(r AuditRecord) {
	line, _ := json.Marshal(&r)
	l.Write(append(line, '\n'))
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProxy starts a server on 127.0.0.1:0 with fn's Dial and Check, unless
// cfg has its own. It is closed at the end of the test.
func startProxy(t testing.TB, fn *fakeNet, cfg Config) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Dial == nil {
		cfg.Dial = fn.Dial
	}
	if cfg.Check == nil {
		cfg.Check = fn.Check
	}
	if cfg.Logf == nil {
		if tt, ok := t.(*testing.T); ok && testing.Verbose() {
			cfg.Logf = tt.Logf
		}
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// socksDial opens a raw SOCKS5 connection and performs the greeting, with
// username/password authentication if user is set.
func socksDial(t testing.TB, proxy, user, pass string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	method := byte(0)
	if user != "" {
		method = 2
	}
	mustWrite(t, c, []byte{5, 1, method})
	got := mustRead(t, c, 2)
	if !bytes.Equal(got, []byte{5, method}) {
		t.Fatalf("method selection = % x, want 05 %02x", got, method)
	}
	if user != "" {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		mustWrite(t, c, msg)
		if got := mustRead(t, c, 2); !bytes.Equal(got, []byte{1, 0}) {
			t.Fatalf("auth reply = % x, want 01 00", got)
		}
	}
	return c
}

// socksRequest sends a request for a domain name (or an IP literal, sent as
// an address) and returns the reply code.
func socksRequest(t testing.TB, c net.Conn, cmd byte, host string, port uint16) byte {
	t.Helper()
	msg := []byte{5, cmd, 0}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		msg = append(append(msg, 1), ip.To4()...)
	} else if ip != nil {
		msg = append(append(msg, 4), ip.To16()...)
	} else {
		msg = append(append(msg, 3, byte(len(host))), host...)
	}
	msg = binary.BigEndian.AppendUint16(msg, port)
	mustWrite(t, c, msg)
	return readSOCKSReply(t, c)
}

func readSOCKSReply(t testing.TB, c net.Conn) byte {
	t.Helper()
	h := mustRead(t, c, 4)
	if h[0] != 5 {
		t.Fatalf("reply version %d", h[0])
	}
	switch h[3] {
	case 1:
		mustRead(t, c, 4+2)
	case 4:
		mustRead(t, c, 16+2)
	default:
		t.Fatalf("reply address type %d", h[3])
	}
	return h[1]
}

func mustWrite(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// roundTrip writes msg and reads the same number of bytes back.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	mustWrite(t, c, []byte(msg))
	if got := string(mustRead(t, c, len(msg))); got != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// checkGoroutines returns a function that waits for the number of goroutines
// to fall back to what it is now, failing with all stacks if it does not.
func checkGoroutines(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("%d goroutines before, %d after Close:\n%s", before, n, buf)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectClosed asserts that c is closed by the other side within 3s.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 3s")
	}
}
