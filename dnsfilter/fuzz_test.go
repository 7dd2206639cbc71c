package dnsfilter

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// fallbackSpec is the list FuzzCheck uses when the fuzzed spec does not
// parse, so that hosts are still checked against names, ports and prefixes.
const fallbackSpec = ".internal.example.com:443,8443,grafana.example.com,100.64.0.0/10:22,[fd7a:115c:a1e0::/48]:22,!admin.internal.example.com,!.x.internal.example.com:8443,!100.100.0.0/16"

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
		if strings.HasPrefix(d.Rule, "!") {
			// A deny rule decided: it denies, and it matches.
			if r := ruleByText(t, l, d.Rule); d.Allow || !r.deny || !r.matches(d.Host, port) {
				t.Fatalf("Check(%q, %d) = %+v: a deny rule that does not match", host, port, d)
			}
		}
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
		noDenyMatches(t, l, d.Host, port)
		if d2 := l.Check(d.Host, port); !d2.Allow || d2.Rule != d.Rule || d2.Host != d.Host {
			t.Fatalf("Check(%q) = %+v but Check(%q) = %+v", host, d, d.Host, d2)
		}

		if addr, err := netip.ParseAddr(d.Host); err == nil {
			if addr.Zone() != "" || addr.Is4In6() || addr.String() != d.Host {
				t.Fatalf("Check(%q) allowed non-canonical address %q", host, d.Host)
			}
			if ad := l.CheckResolved(addr, port); !ad.Allow {
				t.Fatalf("Check(%q) = %+v but CheckResolved(%v) = %+v", host, d, addr, ad)
			}
			if !l.Empty() && !l.denyOnly {
				if r := ruleByText(t, l, d.Rule); r.deny || !r.matches(d.Host, port) {
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
		if !l.Empty() && !l.denyOnly {
			if r := ruleByText(t, l, d.Rule); r.deny || !r.matches(c, port) {
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
	var texts []string
	for _, r := range l.Rules() {
		texts = append(texts, r.Text)
		if r.Deny != strings.HasPrefix(r.Text, "!") {
			t.Fatalf("list %q: rule %+v", s, r)
		}
	}
	if l.Empty() != (s == "") || strings.Join(texts, ",") != s {
		t.Fatalf("list %q: Empty() = %v, Rules() = %v", s, l.Empty(), l.Rules())
	}
	if strings.ContainsAny(s, " \t\r\n") {
		t.Fatalf("canonical spec %q has white space", s)
	}
	for _, r := range texts {
		if got := MustParse(r).String(); got != r {
			t.Fatalf("rule %q alone parses as %q", r, got)
		}
	}
}

// matches reports whether r matches host, a canonical name or address,
// and port: the definition Check's indexes must agree with.
func (r *rule) matches(host string, port uint16) bool {
	if !r.allowsPort(port) {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return r.kind == kindPrefix && r.prefix.Contains(a)
	}
	return r.kind == kindExact && r.name == host ||
		r.kind == kindSuffix && len(host) > len(r.name) && strings.HasSuffix(host, r.name)
}

// noDenyMatches fails if a deny rule of l matches host and port although
// Check allowed them.
func noDenyMatches(t *testing.T, l *List, host string, port uint16) {
	t.Helper()
	for i := range l.rules {
		if r := &l.rules[i]; r.deny && r.matches(host, port) {
			t.Fatalf("Check allowed %s:%d, which deny rule %s matches", host, port, r.text)
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

// FuzzPolicy checks that ParsePolicy never panics, that its errors are
// *PolicyErrors, and that a policy it accepts is a list that round-trips
// and tests that run. Seeds: the test policies and the example.
func FuzzPolicy(f *testing.F) {
	f.Add([]byte(testPolicy))
	if b, err := os.ReadFile("../examples/policy/agent.hujson"); err == nil {
		f.Add(b)
	}
	for _, tt := range policyErrorTests {
		f.Add([]byte(tt.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := ParsePolicy("f", src)
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.File != "f" || !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("ParsePolicy error %#v is not a *PolicyError naming the file", err)
			}
			return
		}
		checkRoundTrip(t, p.List)
		fails := p.Test()
		for _, fl := range fails {
			tt := fl.Test
			if d := p.Decide(tt.host, tt.port, tt.addr); d != fl.Decision {
				t.Fatalf("failure %v decided %+v, Decide says %+v", fl, fl.Decision, d)
			}
		}
		if len(fails) > len(p.Tests) {
			t.Fatalf("%d failures of %d tests", len(fails), len(p.Tests))
		}
	})
}
