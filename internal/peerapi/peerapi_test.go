//go:build linux

package peerapi

import (
	"net"
	"strconv"
	"testing"
	"time"
)

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0016":                         "0.0.0.0:22",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"00000000000000000000000000000000:8000": "[::]:32768",
	} {
		got, err := ParseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestPorts(t *testing.T) {
	got := ports([]string{"http://100.64.0.1:45678", "http://[fd7a:115c:a1e0::1]:45678", "bad\x7f", "http://x/"})
	if len(got) != 1 || !got[45678] {
		t.Errorf("ports = %v", got)
	}
}

// TestShutdownHost: a wildcard listener on a named port stops listening
// (new connections refused) and its Accept fails; a loopback listener on
// another port is untouched.
func TestShutdownHost(t *testing.T) {
	wild, err := net.Listen("tcp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	loop, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	port := uint16(wild.Addr().(*net.TCPAddr).Port)
	accepted := make(chan error, 1)
	go func() {
		c, err := wild.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()

	n, err := ShutdownHost([]string{"http://100.64.0.1:" + strconv.Itoa(int(port)), "http://100.64.0.1:" + strconv.Itoa(loop.Addr().(*net.TCPAddr).Port)})
	if err != nil || n != 1 {
		t.Fatalf("ShutdownHost = %d, %v; want 1 socket", n, err)
	}
	select {
	case err := <-accepted:
		if err == nil {
			t.Error("Accept succeeded after the shutdown")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked after the shutdown")
	}
	if c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(port))); err == nil {
		c.Close()
		t.Error("the shut-down listener still accepts connections")
	}
	lns, err := ProcessListeners("/proc/self")
	if err != nil {
		t.Fatal(err)
	}
	for _, ap := range lns {
		if ap.Port() == port {
			t.Errorf("still listed as listening: %v", ap)
		}
	}
	if c, err := net.Dial("tcp4", loop.Addr().String()); err != nil {
		t.Errorf("the loopback listener: %v", err)
	} else {
		c.Close()
	}
}
