//go:build linux

package socks

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialAs connects to addr from a socket owned by uid: the socket is made
// on a thread whose filesystem uid is uid (setfsuid), which is the owner
// the kernel's socket diagnostics report. Root only.
func dialAs(t *testing.T, uid int, addr string) net.Conn {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
	c, err := net.Dial("tcp", addr)
	syscall.RawSyscall(syscall.SYS_SETFSUID, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestMaxConnsPerClient: another user's connections (uid 65534, as the
// kernel reports their owner) hold at most MaxConnsPerClient slots; the
// next is refused with a reply naming the bound, and the agent's uid
// still gets the rest of MaxConns.
func TestMaxConnsPerClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the flood's sockets are made as uid 65534")
	}
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	audit := new(lockedBuffer)
	s := startProxy(t, fn, Config{MaxConns: 8, MaxConnsPerClient: 4, HandshakeTimeout: time.Hour, Audit: audit.record})
	addr := s.Addr().String()
	socks := func(c net.Conn) byte {
		t.Helper()
		mustWrite(t, c, []byte{5, 1, 0})
		if got := mustRead(t, c, 2); got[0] != 5 || got[1] != 0 {
			t.Fatalf("greeting: %v", got)
		}
		return socksRequest(t, c, 1, "echo.test", 7)
	}

	var flood []net.Conn
	for i := range 4 {
		c := dialAs(t, 65534, addr)
		if got := socks(c); got != 0 {
			t.Fatalf("flood tunnel %d: reply 0x%02x", i, got)
		}
		roundTrip(t, c, "busy")
		flood = append(flood, c)
	}
	if got := socks(dialAs(t, 65534, addr)); got != 0x01 {
		t.Errorf("uid 65534's fifth tunnel: reply 0x%02x, want 0x01", got)
	}
	c := dialAs(t, 65534, addr)
	io.WriteString(c, "GET http://echo.test/ HTTP/1.1\r\nHost: echo.test\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if want := "tsconnect: uid 65534 is at its bound of 4 connections (Config.MaxConnsPerClient); try again later\n"; res.StatusCode != 503 || string(body) != want {
		t.Errorf("uid 65534 over HTTP: %d %q, want 503 %q", res.StatusCode, body, want)
	}
	// The agent (this process, uid 0) has the other four.
	for i := range 4 {
		c := socksDial(t, addr, "", "")
		if got := socksRequest(t, c, 1, "echo.test", 7); got != 0 {
			t.Fatalf("the agent's tunnel %d beside the flood: reply 0x%02x", i, got)
		}
		roundTrip(t, c, "agent")
	}
	for _, c := range flood {
		roundTrip(t, c, "the flood's tunnels still work")
	}
	if st := s.Stats(); st.Refused != 2 || st.Active != 8 {
		t.Errorf("stats %+v, want Refused 2, Active 8", st)
	}
	if !strings.Contains(audit.String(), "uid 65534 is at its bound of 4 connections") {
		t.Errorf("no audit line names the bound:\n%s", audit)
	}
}

// BenchmarkPeerUID is what finding a client's uid costs each accepted
// connection (one NETLINK_SOCK_DIAG request and answer).
func BenchmarkPeerUID(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		if _, ok := peerUID(s); !ok {
			b.Fatal("no uid")
		}
	}
}
