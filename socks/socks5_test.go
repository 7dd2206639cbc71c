package socks

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

func TestSOCKS5XNetProxy(t *testing.T) {
	for _, tc := range []struct {
		name       string
		user, pass string // server
		auth       *proxy.Auth
		wantErr    bool
	}{
		{name: "no auth"},
		{name: "auth", user: "agent", pass: "s3cret", auth: &proxy.Auth{User: "agent", Password: "s3cret"}},
		{name: "wrong password", user: "agent", pass: "s3cret", auth: &proxy.Auth{User: "agent", Password: "nope"}, wantErr: true},
		{name: "missing auth", user: "agent", pass: "s3cret", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := newFakeNet()
			es := newTCPServer(t, echo)
			fn.add("echo.test", es.addr())
			s := startProxy(t, fn, Config{Username: tc.user, Password: tc.pass})
			d, err := proxy.SOCKS5("tcp", s.Addr().String(), tc.auth, proxy.Direct)
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.Dial("tcp", "echo.test:7")
			if tc.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				if n := es.accepts.Load(); n != 0 {
					t.Errorf("target accepted %d connections, want 0", n)
				}
				waitFor(t, "denied count", func() bool { return s.Stats().Denied == 1 })
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			roundTrip(t, c, "hello through socks")
			if got := fn.dials(); !slices.Equal(got, []string{"echo.test:7"}) {
				t.Errorf("Dial saw %q, want the unresolved name echo.test:7", got)
			}
			if got := fn.checks(); !slices.Equal(got, []string{"echo.test:7"}) {
				t.Errorf("Check saw %q", got)
			}
		})
	}
}

// TestSOCKS5ReplyCodes checks RFC 1928 reply codes byte by byte.
func TestSOCKS5ReplyCodes(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	fn.add("denied.test", es.addr()) // reachable, so only Check can stop it
	fn.deny["denied.test"] = "no rule matches"
	fn.add("refused.test", closedPort(t))
	s := startProxy(t, fn, Config{DialTimeout: 200 * time.Millisecond})

	for _, tc := range []struct {
		name string
		cmd  byte
		host string
		want byte
	}{
		{"connect ok", 1, "echo.test", 0x00},
		{"check denies", 1, "denied.test", 0x02},
		{"dial denies", 1, "late-deny.test", 0x02},
		{"bind", 2, "echo.test", 0x07},
		{"udp associate", 3, "echo.test", 0x07},
		{"unknown command", 9, "echo.test", 0x07},
		{"refused", 1, "refused.test", 0x05},
		{"host unreachable", 1, "unreach.test", 0x04},
		{"network unreachable", 1, "netunreach.test", 0x03},
		{"no such host", 1, "nxdomain.test", 0x04},
		{"timeout", 1, "slow.test", 0x06},
		{"other error", 1, "weird.test", 0x01},
		{"bad name", 1, "evil.test\r\nX", 0x02}, // malformed: denied
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := socksDial(t, s.Addr().String(), "", "")
			if got := socksRequest(t, c, tc.cmd, tc.host, 80); got != tc.want {
				t.Errorf("reply = 0x%02x, want 0x%02x", got, tc.want)
			}
		})
	}
	if n := es.accepts.Load(); n != 1 {
		t.Errorf("echo target accepted %d connections, want 1 (only the allowed CONNECT)", n)
	}
	for _, d := range fn.dials() {
		if strings.HasPrefix(d, "denied.test") || strings.Contains(d, "\r") {
			t.Errorf("Dial was called for %q", d)
		}
	}

	t.Run("address type", func(t *testing.T) {
		c := socksDial(t, s.Addr().String(), "", "")
		mustWrite(t, c, []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80})
		if got := readSOCKSReply(t, c); got != 0x08 {
			t.Errorf("reply = 0x%02x, want 0x08", got)
		}
	})
	t.Run("ip literal", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(es.addr())
		fn.add(es.addr(), es.addr())
		c := socksDial(t, s.Addr().String(), "", "")
		var p uint16
		for _, ch := range port {
			p = p*10 + uint16(ch-'0')
		}
		if got := socksRequest(t, c, 1, host, p); got != 0 {
			t.Fatalf("reply = 0x%02x", got)
		}
		roundTrip(t, c, "by address")
	})
}

func TestSOCKS5Auth(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("echo.test", es.addr())
	s := startProxy(t, fn, Config{Username: "agent", Password: "s3cret"})
	addr := s.Addr().String()

	t.Run("ok", func(t *testing.T) {
		c := socksDial(t, addr, "agent", "s3cret")
		if got := socksRequest(t, c, 1, "echo.test", 7); got != 0 {
			t.Fatalf("reply = 0x%02x", got)
		}
		roundTrip(t, c, "authenticated")
	})
	t.Run("wrong password", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		mustWrite(t, c, []byte{5, 1, 2})
		if got := mustRead(t, c, 2); !bytes.Equal(got, []byte{5, 2}) {
			t.Fatalf("method selection = % x", got)
		}
		mustWrite(t, c, []byte{1, 5, 'a', 'g', 'e', 'n', 't', 3, 'b', 'a', 'd'})
		if got := mustRead(t, c, 2); !bytes.Equal(got, []byte{1, 1}) {
			t.Fatalf("auth reply = % x, want 01 01", got)
		}
		expectClosed(t, c)
	})
	t.Run("no auth offered", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		mustWrite(t, c, []byte{5, 1, 0})
		if got := mustRead(t, c, 2); !bytes.Equal(got, []byte{5, 0xff}) {
			t.Fatalf("method selection = % x, want 05 ff", got)
		}
		expectClosed(t, c)
	})
	if n := es.accepts.Load(); n != 1 {
		t.Errorf("target accepted %d connections, want 1", n)
	}
}

// TestSOCKS5Expand checks that a short name is expanded before Check and
// Dial, and that IP literals are not.
func TestSOCKS5Expand(t *testing.T) {
	fn := newFakeNet()
	es := newTCPServer(t, echo)
	fn.add("web.tailnet.test", es.addr())
	var expanded []string
	s := startProxy(t, fn, Config{Expand: func(h string) string {
		expanded = append(expanded, h) // only the one client below: no race
		if !strings.Contains(h, ".") {
			return h + ".tailnet.test"
		}
		return h
	}})
	c := socksDial(t, s.Addr().String(), "", "")
	if got := socksRequest(t, c, 1, "web", 80); got != 0 {
		t.Fatalf("reply = 0x%02x", got)
	}
	roundTrip(t, c, "expanded")
	if got := fn.checks(); !slices.Equal(got, []string{"web.tailnet.test:80"}) {
		t.Errorf("Check saw %q", got)
	}
	if got := fn.dials(); !slices.Equal(got, []string{"web.tailnet.test:80"}) {
		t.Errorf("Dial saw %q", got)
	}
	if !slices.Equal(expanded, []string{"web"}) {
		t.Errorf("Expand saw %q", expanded)
	}
}

func TestSOCKS4Refused(t *testing.T) {
	fn := newFakeNet()
	s := startProxy(t, fn, Config{})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	mustWrite(t, c, []byte{4, 1, 0, 80, 127, 0, 0, 1, 'u', 0})
	if got := mustRead(t, c, 8); got[0] != 0 || got[1] != 0x5b {
		t.Fatalf("reply = % x, want 00 5b ...", got)
	}
	expectClosed(t, c)
	if len(fn.dials()) != 0 {
		t.Errorf("dialed %q", fn.dials())
	}
}

// TestSOCKS5HalfClose checks that a client's half-close reaches the target
// while the target's answer still flows back.
func TestSOCKS5HalfClose(t *testing.T) {
	fn := newFakeNet()
	ts := newTCPServer(t, func(c net.Conn) {
		var buf bytes.Buffer
		buf.ReadFrom(c) // until the client's CloseWrite
		c.Write([]byte(strings.ToUpper(buf.String())))
	})
	fn.add("upper.test", ts.addr())
	s := startProxy(t, fn, Config{})
	c := socksDial(t, s.Addr().String(), "", "")
	if got := socksRequest(t, c, 1, "upper.test", 1); got != 0 {
		t.Fatalf("reply = 0x%02x", got)
	}
	mustWrite(t, c, []byte("shout"))
	c.(*net.TCPConn).CloseWrite()
	var got bytes.Buffer
	if _, err := got.ReadFrom(c); err != nil {
		t.Fatal(err)
	}
	if got.String() != "SHOUT" {
		t.Fatalf("got %q", got.String())
	}
	waitFor(t, "bytes counted", func() bool {
		st := s.Stats()
		return st.BytesUp == 5 && st.BytesDown == 5 && st.Active == 0
	})
}
