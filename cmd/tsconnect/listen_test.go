package main

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/peerapi"
)

// waitListeners returns the TCP addresses process pid listens on, once ok
// accepts them or after 15 s. tailscale's peer API would add a socket on
// 0.0.0.0: the node opens it while it joins and tsconnect shuts it down
// right after (and again if a map change makes it listen anew), so a
// listener still there is waited out; one that stays is reported by the
// caller.
func waitListeners(t *testing.T, pid int, ok func([]netip.AddrPort) bool) []netip.AddrPort {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		aps, err := peerapi.ProcessListeners(fmt.Sprintf("/proc/%d", pid))
		if err != nil {
			t.Fatal(err)
		}
		if ok(aps) || time.Now().After(deadline) {
			return aps
		}
	}
}

// checkListeners fails t unless process pid listens on exactly want (TCP,
// any address).
func checkListeners(t *testing.T, pid int, want ...string) {
	t.Helper()
	slices.Sort(want)
	addrs := func(aps []netip.AddrPort) []string {
		var s []string
		for _, ap := range aps {
			s = append(s, ap.String())
		}
		slices.Sort(s)
		return s
	}
	got := addrs(waitListeners(t, pid, func(aps []netip.AddrPort) bool { return slices.Equal(addrs(aps), want) }))
	if !slices.Equal(got, want) {
		t.Errorf("tsconnect (pid %d) listens on %v; want only %v", pid, got, want)
	}
}

// checkLoopbackListeners fails t unless every TCP socket process pid
// listens on is on 127.0.0.1, and there are at least min of them.
func checkLoopbackListeners(t *testing.T, pid, min int) {
	t.Helper()
	notLoopback := func(aps []netip.AddrPort) []netip.AddrPort {
		return slices.DeleteFunc(slices.Clone(aps), func(ap netip.AddrPort) bool {
			return ap.Addr() == netip.AddrFrom4([4]byte{127, 0, 0, 1})
		})
	}
	aps := waitListeners(t, pid, func(aps []netip.AddrPort) bool { return len(notLoopback(aps)) == 0 })
	if bad := notLoopback(aps); len(bad) > 0 {
		t.Errorf("listens on %v, not on 127.0.0.1", bad)
	}
	if len(aps) < min {
		t.Errorf("listens on %d sockets, want at least %d", len(aps), min)
	}
}
