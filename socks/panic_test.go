package socks

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPanicEndsOneConnection: a panic while serving one client (here in
// Dial) closes that client's connection and is logged; the process
// survives and the proxy goes on serving others, over both protocols.
func TestPanicEndsOneConnection(t *testing.T) {
	t.Cleanup(checkGoroutines(t)) // registered first: runs after the servers close
	fn := newFakeNet()
	echoSrv := newTCPServer(t, echo)
	fn.add("echo.test", echoSrv.addr())
	var mu sync.Mutex
	var logs []string
	s := startProxy(t, fn, Config{
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.HasPrefix(addr, "panic.test:") {
				panic("boom in Dial")
			}
			return fn.Dial(ctx, network, addr)
		},
		Logf: func(format string, args ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(format, args...))
			mu.Unlock()
		},
	})

	for range 3 {
		c := socksDial(t, s.Addr().String(), "", "")
		msg := []byte{5, 1, 0, 3, byte(len("panic.test"))}
		msg = append(append(msg, "panic.test"...), 0, 80)
		mustWrite(t, c, msg)
		expectClosed(t, c)

		hc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(hc, "CONNECT panic.test:80 HTTP/1.1\r\nHost: panic.test:80\r\n\r\n")
		hc.SetReadDeadline(time.Now().Add(3 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(hc), nil); err == nil {
			t.Errorf("HTTP CONNECT that panicked got a response: %s", resp.Status)
		}
		hc.Close()
	}

	// Still serving, both protocols.
	c := socksDial(t, s.Addr().String(), "", "")
	if code := socksRequest(t, c, 1, "echo.test", 7); code != 0 {
		t.Fatalf("SOCKS5 after the panics: reply %#x", code)
	}
	roundTrip(t, c, "still here")
	c.Close()
	hc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	fmt.Fprintf(hc, "CONNECT echo.test:7 HTTP/1.1\r\nHost: echo.test:7\r\n\r\n")
	br := bufio.NewReader(hc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP CONNECT after the panics: %v %v", resp, err)
	}
	hc.Close()

	mu.Lock()
	joined := strings.Join(logs, "\n")
	mu.Unlock()
	if n := strings.Count(joined, "boom in Dial"); n < 6 {
		t.Errorf("logged %d of 6 panics:\n%s", n, joined)
	}
	if st := s.Stats(); st.Active != 0 {
		waitFor(t, "slots to be released", func() bool { return s.Stats().Active == 0 })
	}
}
