package dnsfilter

import (
	"net/netip"
	"strings"
	"testing"
)

// fallbackSpec is the list FuzzCheck uses when the fuzzed spec does not
// parse, so that hosts are still checked against names, ports and prefixes.
const fallbackSpec = ".internal.example.com:443,8443,grafana.example.com,100.64.0.0/10:22,[fd7a:115c:a1e0::/48]:22"

// FuzzCheck checks a fuzzed host against a fuzzed list. Seeds: every
// config and destination in listTests (suffix boundaries, trailing dots,
// IDN homographs, fullwidth dots, malformed names, legacy IP literals,
// IPv4-mapped IPv6, ports).
func FuzzCheck(f *testing.F) {
	for _, tt := range listTests {
		for _, dest := range append(append([]string{}, tt.match...), tt.nomatch...) {
			host, port := splitDest(f, dest)
			f.Add(tt.config, host, port)
		}
	}
	f.Fuzz(func(t *testing.T, spec, host string, port uint16) {
		l, err := Parse(spec)
		if err != nil {
			l = MustParse(fallbackSpec)
		}
		checkRoundTrip(t, l)

		d := l.Check(host, port)
		if !d.Allow {
			if d.Err(host, port) == nil {
				t.Fatalf("Check(%q) = %+v denies but Err is nil", host, d)
			}
			if d.Host != "" {
				// Denied after canonicalisation: the canonical form
				// must be denied the same way.
				if d2 := l.Check(d.Host, port); d2.Allow || d2.Rule != d.Rule {
					t.Fatalf("Check(%q) = %+v but Check(%q) = %+v", host, d, d.Host, d2)
				}
			}
			return
		}
		if d.Err(host, port) != nil {
			t.Fatalf("Check(%q) = %+v allows but Err is not nil", host, d)
		}
		if d.Host == "" {
			t.Fatalf("Check(%q) = %+v allows with no Host", host, d)
		}
		if d2 := l.Check(d.Host, port); !d2.Allow || d2.Rule != d.Rule || d2.Host != d.Host {
			t.Fatalf("Check(%q) = %+v but Check(%q) = %+v", host, d, d.Host, d2)
		}

		if addr, err := netip.ParseAddr(d.Host); err == nil {
			if addr.Zone() != "" || addr.Is4In6() || addr.String() != d.Host {
				t.Fatalf("Check(%q) allowed non-canonical address %q", host, d.Host)
			}
			if ad := l.CheckAddr(addr, port); !ad.Allow || ad.Rule != d.Rule {
				t.Fatalf("Check(%q) = %+v but CheckAddr(%v) = %+v", host, d, addr, ad)
			}
			if !l.Empty() {
				r := ruleByText(t, l, d.Rule)
				if r.kind != kindPrefix || !r.prefix.Contains(addr) || !r.allowsPort(port) {
					t.Fatalf("Check(%q, %d) allowed by %q, which does not match", host, port, d.Rule)
				}
			}
			return
		}

		// An allowed name is a valid canonical name.
		c, err := Canonical(host)
		if err != nil || c != d.Host {
			t.Fatalf("Check(%q) = %+v allows, but Canonical = %q, %v", host, d, c, err)
		}
		if len(c) > maxNameLen {
			t.Fatalf("Check(%q) allowed a %d-byte name", host, len(c))
		}
		for i := 0; i < len(c); i++ {
			if b := c[i]; !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.') {
				t.Fatalf("Check(%q) allowed %q, which has byte %q", host, c, b)
			}
		}
		if d2 := l.Check(c+".", port); !d2.Allow || d2.Rule != d.Rule {
			t.Fatalf("Check(%q) = %+v but Check(%q) = %+v", c, d, c+".", d2)
		}
		if d2 := l.Check(c+"..", port); d2.Allow {
			t.Fatalf("Check(%q) allows two trailing dots: %+v", c+"..", d2)
		}
		if d2 := l.Check(strings.ToUpper(c), port); !d2.Allow || d2.Rule != d.Rule {
			t.Fatalf("Check(%q) = %+v but Check(%q) = %+v", c, d, strings.ToUpper(c), d2)
		}
		if !l.Empty() {
			r := ruleByText(t, l, d.Rule)
			ok := r.allowsPort(port) && (r.kind == kindExact && r.name == c ||
				r.kind == kindSuffix && len(c) > len(r.name) && strings.HasSuffix(c, r.name))
			if !ok {
				t.Fatalf("Check(%q, %d) allowed by %q, which does not match", host, port, d.Rule)
			}
		}
	})
}

// FuzzParse checks that Parse never panics and that what it accepts
// round-trips. Seeds: the configs of listTests and parseErrorTests.
func FuzzParse(f *testing.F) {
	for _, tt := range listTests {
		f.Add(tt.config)
	}
	for _, tt := range parseErrorTests {
		f.Add(tt.spec)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		l, err := Parse(spec)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dnsfilter: entry ") {
				t.Fatalf("Parse(%q) error %q does not name the entry", spec, err)
			}
			return
		}
		checkRoundTrip(t, l)
	})
}

func checkRoundTrip(t *testing.T, l *List) {
	t.Helper()
	s := l.String()
	l2, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q) (a String result) failed: %v", s, err)
	}
	if l2.String() != s {
		t.Fatalf("Parse(%q).String() = %q", s, l2.String())
	}
	if l.Empty() != (s == "") || strings.Join(l.Rules(), ",") != s {
		t.Fatalf("list %q: Empty() = %v, Rules() = %q", s, l.Empty(), l.Rules())
	}
	if strings.ContainsAny(s, " \t\r\n") {
		t.Fatalf("canonical spec %q has white space", s)
	}
	for _, r := range l.Rules() {
		if got := MustParse(r).String(); got != r {
			t.Fatalf("rule %q alone parses as %q", r, got)
		}
	}
}

func ruleByText(t *testing.T, l *List, text string) *rule {
	t.Helper()
	for i := range l.rules {
		if l.rules[i].text == text {
			return &l.rules[i]
		}
	}
	t.Fatalf("Decision names rule %q, which is not in %q", text, l)
	return nil
}
