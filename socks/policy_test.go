package socks

import (
	"slices"
	"testing"
)

// TestHostDefinition: the proxy refuses exactly what dnsfilter.Malformed
// refuses, and passes the rest, international names included, to Check.
func TestHostDefinition(t *testing.T) {
	fn := newFakeNet()
	s := startProxy(t, fn, Config{})
	for _, tt := range []struct {
		host  string
		reply byte
	}{
		{"bücher.test", repHostUnreachable}, // well-formed: Check allows it; the fake network has no such host
		{"-bad.test", repNotAllowed},        // malformed: never reaches Check
		{"bad%2e.test", repNotAllowed},      // malformed
	} {
		c := socksDial(t, s.Addr().String(), "", "")
		if got := socksRequest(t, c, 1, tt.host, 443); got != tt.reply {
			t.Errorf("CONNECT %q: reply %#x, want %#x", tt.host, got, tt.reply)
		}
	}
	checks := fn.checks()
	if !slices.Contains(checks, "bücher.test:443") {
		t.Errorf("Check never saw the international name; it saw %q", checks)
	}
	for _, c := range checks {
		if c == "-bad.test:443" || c == "bad%2e.test:443" {
			t.Errorf("Check saw the malformed %q", c)
		}
	}
}
