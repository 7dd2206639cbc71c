package main

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/peerapi"
)

// checkListeners fails t unless process pid listens on exactly want (TCP,
// any address). tailscale's peer API would add a socket on 0.0.0.0. The
// node opens that socket while it joins and tsconnect shuts it down right
// after (and again if a map change makes it listen anew), so a listener
// still there is waited out for up to 15 s; one that stays is reported.
func checkListeners(t *testing.T, pid int, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		aps, err := peerapi.ProcessListeners(fmt.Sprintf("/proc/%d", pid))
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, ap := range aps {
			got = append(got, ap.String())
		}
		slices.Sort(got)
		if slices.Equal(got, want) || time.Now().After(deadline) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("tsconnect (pid %d) listens on %v; want only %v", pid, got, want)
	}
}

// checkLoopbackListeners fails t unless every TCP socket process pid
// listens on is on 127.0.0.1, and there are at least min of them.
func checkLoopbackListeners(t *testing.T, pid, min int) {
	t.Helper()
	var bad []netip.AddrPort
	var n int
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		aps, err := peerapi.ProcessListeners(fmt.Sprintf("/proc/%d", pid))
		if err != nil {
			t.Fatal(err)
		}
		bad, n = bad[:0], len(aps)
		for _, ap := range aps {
			if ap.Addr() != netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
				bad = append(bad, ap)
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(bad) > 0 {
		t.Errorf("listens on %v, not on 127.0.0.1", bad)
	}
	if n < min {
		t.Errorf("listens on %d sockets, want at least %d", n, min)
	}
}
