package dnsfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// listTests are allowlists with destinations ("host:port", split at the
// last colon) that they must allow (match) and deny (nomatch), in the shape
// of x/net/proxy's TestPerHost. FuzzCheck is seeded from them.
var listTests = []struct {
	name    string
	config  string
	match   []string
	nomatch []string
}{{
	name:   "suffix is strictly under, on a label boundary",
	config: ".internal.example.com",
	match: []string{
		"a.internal.example.com:443",
		"a.b.internal.example.com:1",
		"A.Internal.Example.COM:443",  // case-insensitive
		"a.internal.example.com.:443", // one trailing dot
		"_sip._tcp.internal.example.com:5060",
		"xn--bcher-kva.internal.example.com:443",
		"bücher.internal.example.com:443", // IDNA to the line above
	},
	nomatch: []string{
		"internal.example.com:443", // the domain itself
		"evilinternal.example.com:443",
		"a.internal.example.com.evil.com:443",
		"a.internal.example.co:443",
		"a.internal.example.com..:443", // two trailing dots
		".internal.example.com:443",
		"a..internal.example.com:443",
		"internal.example.com.:443",
		"example.com:443",
		"a.internal-example.com:443",
	},
}, {
	name:   "*. is a synonym for the leading dot",
	config: "*.example.com",
	match:  []string{"a.example.com:80", "a.b.example.com:80"},
	nomatch: []string{
		"example.com:80",
		"evilexample.com:80",
		"*.example.com:80",
	},
}, {
	name:    "exact name",
	config:  "grafana.internal.example.com",
	match:   []string{"grafana.internal.example.com:443", "GRAFANA.internal.example.com.:80"},
	nomatch: []string{"a.grafana.internal.example.com:443", "grafana.internal.example.com.evil:443", "rafana.internal.example.com:443"},
}, {
	name:   "IDN homographs and fullwidth forms",
	config: "grafana.internal.example.com,.ts.net",
	match: []string{
		"node.tail1234.ts.net:443",
		"GRAFANA.internal.example.com:443",
		"bücher.tail1234.ts.net:443",
		"BÜCHER.tail1234.ts.net:443",
		"xn--bcher-kva.tail1234.ts.net:443",
	},
	nomatch: []string{
		"grаfana.internal.example.com:443",        // Cyrillic 'а'
		"xn--grfana-4nf.internal.example.com:443", // its A-label
		"ＧＲＡＦＡＮＡ.internal.example.com:443",        // IDNA would map fullwidth letters to ASCII
		"grafana．internal。example｡com:443",        // IDNA would map these dots to '.'
		"grafana.internal.example.com。:443",       // a trailing ideographic dot
		"grafana.internal.example.com。。:443",
		"bu\u0308cher.tail1234.ts.net:443",       // NFD: IDNA would normalize it
		"grafana\u00ad.internal.example.com:443", // soft hyphen: IDNA would drop it
		"grafana..internal.example.com:443",
		"grafana.internal.example.com\u200b:443", // zero-width space
		"grafana\u2024internal.example.com:443",  // one dot leader is not a dot
		"node.tail1234.ts\uff0e\uff0enet:443",
		"xn--.ts.net:443",
		"xn--a.ts.net:443",        // all-ASCII punycode
		"xn--zzzzzzzz.ts.net:443", // invalid punycode
		"ts.net:443",
	},
}, {
	name:   "malformed names are denied",
	config: ".example.com,example.com",
	match:  []string{"a-b.example.com:1", "a_b.example.com:1", strings.Repeat("a", 63) + ".example.com:1"},
	nomatch: []string{
		":443",
		".:443",
		"a\x00.example.com:443",
		"a\r\n.example.com:443",
		"a\t.example.com:443",
		"a b.example.com:443",
		"a%2e.example.com:443",
		"a%00.example.com:443",
		"a/b.example.com:443",
		"a\\b.example.com:443",
		"user@a.example.com:443",
		"a:b.example.com:443",
		"-a.example.com:443",
		"a-.example.com:443",
		"a*.example.com:443",
		"a\x7f.example.com:443",
		"\xff.example.com:443",
		strings.Repeat("a", 64) + ".example.com:443",
		strings.Repeat("a.", 125) + "example.com:443", // 261 bytes
		"[a.example.com]:443",
	},
}, {
	name:   "IP literals vs exact and suffix names",
	config: "localhost,.example.com,.in-addr.arpa",
	match:  []string{"localhost:80", "1.0.0.127.in-addr.arpa:53"},
	nomatch: []string{
		"127.0.0.1:80",
		"127.1:80",
		"0x7f.0.0.1:80",
		"0177.0.0.1:80",
		"2130706433:80",
		"0x7f000001:80",
		"1.2.3.4.example.com.1:80",
		"::1:80",
		"[::1]:80",
	},
}, {
	name:   "IPv4 CIDR and single address",
	config: "100.64.0.0/10,10.20.0.0/16,192.0.2.7",
	match: []string{
		"100.64.0.1:22",
		"100.127.255.255:22",
		"10.20.3.4:443",
		"192.0.2.7:80",
		"::ffff:100.64.0.1:22",   // IPv4-mapped IPv6 is unmapped
		"[::ffff:100.64.0.1]:22", // bracketed too
		"::ffff:6440:1:22",       // the same in hex
	},
	nomatch: []string{
		"100.128.0.1:22",
		"10.21.0.1:443",
		"192.0.2.8:80",
		"100.64.1:22",        // legacy short form: ambiguous, denied
		"0x64.0x40.0.1:22",   // legacy hex
		"0144.0100.0.1:22",   // legacy octal
		"1681915905:22",      // legacy integer
		"100.64.0.1.:22",     // trailing dot: not an IP literal to Go
		"::100.64.0.1:22",    // IPv4-compatible is IPv6, not mapped
		"64:ff9b::6440:1:22", // NAT64 is IPv6
		"100.64.0.1%eth0:22",
		"[100.64.0.1]:22", // brackets are for IPv6
		"１００.６４.０.１:22",   // fullwidth digits
		"100。64。0。1:22",
		"example.com:22",
	},
}, {
	name:   "IPv6 CIDR",
	config: "fd7a:115c:a1e0::/48,[fd00::/16]:22",
	match: []string{
		"fd7a:115c:a1e0::1:443",
		"[fd7a:115c:a1e0:ab12::1]:443",
		"FD7A:115C:A1E0::1:443",
		"fd00::1:22",
	},
	nomatch: []string{
		"fd7a:115c:a1e1::1:443",
		"fd00::1:23",
		"fe80::1%eth0:443",
		"[fd7a:115c:a1e0::1%eth0]:443",
		"[fd7a:115c:a1e0::1:443", // unbalanced bracket
		"100.64.0.1:443",
	},
}, {
	name:   "ports",
	config: ".a.com:443,8443,.b.com,c.com:8000-8002,9000,100.64.0.0/10:22,[fd7a::/48]:22,2222",
	match: []string{
		"x.a.com:443",
		"x.a.com:8443",
		"x.b.com:1",
		"x.b.com:65535",
		"c.com:8000",
		"c.com:8002",
		"c.com:9000",
		"100.64.0.1:22",
		"fd7a::1:2222",
	},
	nomatch: []string{
		"x.a.com:80",
		"x.a.com:0",
		"c.com:8003",
		"c.com:7999",
		"100.64.0.1:23",
		"fd7a::1:23",
	},
}, {
	name:   "the first rule that allows the port decides",
	config: ".example.com:22,.b.example.com,a.b.example.com:443",
	match:  []string{"a.b.example.com:80", "a.example.com:22"},
	nomatch: []string{
		"a.example.com:80",
	},
}, {
	name:   "deny entries win over allow entries, on names, ports and literals",
	config: ".corp.ts.net,!admin.corp.ts.net,!.internal.corp.ts.net:22,100.64.0.0/10,!100.100.0.0/16",
	match: []string{
		"grafana.corp.ts.net:443",
		"w1.internal.corp.ts.net:443",
		"x.admin.corp.ts.net:443",
		"100.64.0.1:22",
	},
	nomatch: []string{
		"admin.corp.ts.net:443",
		"ADMIN.corp.ts.net.:80",
		"w1.internal.corp.ts.net:22",
		"100.100.1.1:443",
		"::ffff:100.100.1.1:443",
	},
}, {
	name:    "deny entries alone allow the rest",
	config:  "!admin.corp.ts.net,!10.0.0.0/8:22",
	match:   []string{"grafana.corp.ts.net:443", "10.1.1.1:443", "admin.corp.ts.net.evil:443"},
	nomatch: []string{"admin.corp.ts.net:443", "10.1.1.1:22", "a..b:443"},
}, {
	name:   "empty list allows every well-formed destination",
	config: "  ",
	match: []string{
		"anything.example.com:1",
		"grafana:443",
		"8.8.8.8:53",
		"[2001:db8::1]:443",
	},
	nomatch: []string{
		"a..b:443",
		"127.1:80",
		"a b:443",
		"fe80::1%eth0:443",
	},
}}

// splitDest splits "host:port" at the last colon.
func splitDest(t testing.TB, dest string) (string, uint16) {
	t.Helper()
	i := strings.LastIndexByte(dest, ':')
	if i < 0 {
		t.Fatalf("bad test destination %q: no port", dest)
	}
	p, err := strconv.ParseUint(dest[i+1:], 10, 16)
	if err != nil {
		t.Fatalf("bad test destination %q: %v", dest, err)
	}
	return dest[:i], uint16(p)
}

func TestList(t *testing.T) {
	for _, tt := range listTests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse(tt.config)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.config, err)
			}
			for _, dest := range tt.match {
				host, port := splitDest(t, dest)
				if d := l.Check(host, port); !d.Allow {
					t.Errorf("config %q: Check(%q, %d) = %v, want allow", tt.config, host, port, d)
				}
			}
			for _, dest := range tt.nomatch {
				host, port := splitDest(t, dest)
				if d := l.Check(host, port); d.Allow {
					t.Errorf("config %q: Check(%q, %d) = %v, want deny", tt.config, host, port, d)
				}
			}
		})
	}
}

// parseErrorTests are specs Parse must reject, with a substring of the
// error; every error names the entry.
var parseErrorTests = []struct {
	spec    string
	wantErr string
}{
	{"0-0.", `entry 1 "0-0.": a name of digits and '-' alone reads as a port range`},
	{"ex ample.com", `entry 1 "ex ample.com": name has a space`},
	{".a.com,,.b.com", `entry 2 "": empty entry`},
	{".a.com,", `entry 2 "": empty entry`},
	{",", `entry 1 "": empty entry`},
	{".a.com, ,.b.com", `entry 2 "": empty entry`},
	{".a.com,.b.com,ex ample.com", `entry 3 "ex ample.com": name has a space`},
	{"443", `entry 1 "443": port with no host:port entry before it`},
	{".a.com,443", `entry 2 "443": port with no host:port entry before it`},
	{".a.com:443,.b.com,8443", `entry 3 "8443": port with no host:port`},
	{".a.com:0", `port 0 out of range`},
	{".a.com:65536", `port 65536 out of range`},
	{".a.com:443,0", `entry 2 "0": port 0 out of range`},
	{".a.com:99999999999999999999", `out of range`},
	{".a.com:https", `bad port "https"`},
	{".a.com:", `empty port`},
	{".a.com:443-80", `backwards`},
	{".a.com:443-", `empty port`},
	{".a.com:-443", `empty port`},
	{".a.com:443,8443-", `entry 2 "8443-": empty port`},
	{".a.com:+443", `not a number`},
	{":443", `port with no host`},
	{".", `no domain after the leading dot`},
	{"*.", `no domain after the leading dot`},
	{"..a.com", `empty label`},
	{"a..com", `empty label`},
	{"a.com..", `more than one trailing dot`},
	{"*", `'*' alone is not a rule`},
	{"a.*.com", `'*' is only allowed as a leading "*."`},
	{"*a.com", `'*' is only allowed`},
	{"**.a.com", `'*' is only allowed`},
	{"a\x00.com", `NUL`},
	{"a\r\n.com", `control character`},
	{"a%.com", `name has '%'`},
	{"a/b.com", `name has '/'`},
	{"a@b.com", `name has '@'`},
	{"a\\b.com", `name has '\\'`},
	{strings.Repeat("a", 64) + ".com", `label longer than 63`},
	{strings.Repeat("a.", 127) + "com", `name longer than 253`},
	{"-a.com", `label starts or ends with '-'`},
	{"xn--a.com", `not valid punycode`},
	{"gr\xffafana.com", `not valid UTF-8`},
	{"a\u200b.com", `not in IDNA normal form`},
	{"ｅｘａｍｐｌｅ.com", `not in IDNA normal form`},
	{"example．com", `fullwidth or ideographic dot`},
	{"ex\u0000ample.com", `NUL`},
	{"ex%41mple.com", `'%'`},
	{"a.com:44\r3", `bad port`},
	{"127.1", `dotted-decimal form, 127.0.0.1`},
	{"0x7f.0.0.1", `127.0.0.1`},
	{"0177.0.0.1", `127.0.0.1`},
	{"2130706433", `port with no host`}, // all digits reads as a port
	{"a.com,2130706433", `port with no host`},
	{"127.0.0.1.", `dotted-decimal`},
	{".1", `numeric last label`},
	{".0.1", `numeric last label`},
	{"foo.0x1", `numeric last label`},
	{"１２７.０.０.１", `not in IDNA normal form`},
	{"10.1.0.0/8", `host bits set: did you mean 10.0.0.0/8?`},
	{"10.0.0.0/33", `bad prefix`},
	{"0177.0.0.0/8", `bad prefix`},
	{"10.0.0.0/8/8", `bad prefix`},
	{"fd7a::/48:22", `needs brackets, as in [fd7a::/48]:22`},
	{"fd7a::1/129", `bad prefix`},
	{"fe80::1%eth0", `zones are not allowed`},
	{"[fe80::1%eth0]:22", `zones are not allowed`},
	{"::ffff:1.2.3.4", `IPv4-mapped`},
	{"::ffff:0:0/96", `IPv4-mapped`},
	{"[1.2.3.4]:22", `brackets are only for IPv6`},
	{"[fd7a::/48", `'[' without ']'`},
	{"[fd7a::/48]22", `unexpected "22" after ']'`},
	{"[fd7a::/48]:", `empty port`},
	{"[example.com]:22", `brackets are only for IPv6`},
	{"grafana.example.com:443:22", `bad address`},
	{"!", `'!' with no entry after it`},
	{".a.com,!", `entry 2 "!": '!' with no entry after it`},
	{"!!a.com", `name has '!'`},
	{"! a.com", `name has a space`},
	{"!*", `'*' alone is not a rule`},
	{"!a.com:0", `port 0 out of range`},
	{"a!b.com", `name has '!'`},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorTests {
		l, err := Parse(tt.spec)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want error containing %q", tt.spec, l, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.spec, err, tt.wantErr)
		}
		if !strings.HasPrefix(err.Error(), "dnsfilter: entry ") {
			t.Errorf("Parse(%q) error = %q, does not name the entry", tt.spec, err)
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Entry < 1 {
			t.Errorf("Parse(%q) error = %#v, want a *ParseError with an entry number", tt.spec, err)
		}
	}
}

func TestParseCanonical(t *testing.T) {
	for _, tt := range []struct {
		spec, want string
		rules      int
	}{
		{"", "", 0},
		{" \t\n ", "", 0},
		{".A.Example.COM.", ".a.example.com", 1},
		{"*.example.com", ".example.com", 1},
		{" .a.com , b.com ", ".a.com,b.com", 2},
		{".a.com:8443,443", ".a.com:443,8443", 1},
		{".a.com:443, 8443 ,.b.com", ".a.com:443,8443,.b.com", 2},
		{"c.com:80,81,82,90-95,94-99,443-443", "c.com:80-82,90-99,443", 1},
		{"c.com:1-65535,22", "c.com:1-65535", 1},
		{"bücher.example", "xn--bcher-kva.example", 1},
		{"*.BÜCHER.example", ".xn--bcher-kva.example", 1},
		{"100.64.0.0/10:22,2222", "100.64.0.0/10:22,2222", 1},
		{"192.0.2.7,192.0.2.7/32,192.0.2.7:22", "192.0.2.7,192.0.2.7,192.0.2.7:22", 3},
		{"FD7A:115C:A1E0::/48", "fd7a:115c:a1e0::/48", 1},
		{"[fd7a:115c:a1e0::/48]", "fd7a:115c:a1e0::/48", 1},
		{"[fd7a:115c:a1e0::/48]:22,80", "[fd7a:115c:a1e0::/48]:22,80", 1},
		{"fd7a::1/128", "fd7a::1", 1},
		{"[fd7a::1]:443", "[fd7a::1]:443", 1},
		{"0.0.0.0/0,::/0", "0.0.0.0/0,::/0", 2},
		{"_sip._tcp.example.com", "_sip._tcp.example.com", 1},
		{"localhost", "localhost", 1},
		{" !Admin.Corp.TS.net.:443,80 ", "!admin.corp.ts.net:80,443", 1},
		{"!*.corp.ts.net,!FD7A::/16,![fd7a::1]:22", "!.corp.ts.net,!fd7a::/16,![fd7a::1]:22", 3},
	} {
		l, err := Parse(tt.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.spec, err)
			continue
		}
		if got := l.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.spec, got, tt.want)
		}
		if got := len(l.Rules()); got != tt.rules {
			t.Errorf("Parse(%v) has %d rules %v, want %d", tt.spec, got, l.Rules(), tt.rules)
		}
		if l.Empty() != (tt.rules == 0) {
			t.Errorf("Parse(%q).Empty() = %v", tt.spec, l.Empty())
		}
		l2, err := Parse(l.String())
		if err != nil || l2.String() != l.String() {
			t.Errorf("Parse(%q) = %q, %v; want it to round-trip", l.String(), l2, err)
		}
	}
}

func TestDecision(t *testing.T) {
	l := MustParse(".internal.example.com:443,8443,grafana.internal.example.com,100.64.0.0/10:22")
	for _, tt := range []struct {
		host       string
		port       uint16
		allow      bool
		rule       string
		reason     string
		decidedFor string // Decision.Host
	}{
		{"a.internal.example.com", 443, true, ".internal.example.com:443,8443", "matches .internal.example.com:443,8443", "a.internal.example.com"},
		{"Grafana.Internal.Example.com.", 80, true, "grafana.internal.example.com", "matches grafana.internal.example.com", "grafana.internal.example.com"},
		{"grafana.internal.example.com", 443, true, ".internal.example.com:443,8443", "matches .internal.example.com:443,8443", "grafana.internal.example.com"},
		{"a.internal.example.com", 22, false, ".internal.example.com:443,8443", "port 22 not in 443,8443", "a.internal.example.com"},
		{"evil.example.com", 443, false, "", "no rule matches", "evil.example.com"},
		{"a..b", 443, false, "", "malformed name: empty label", ""},
		{"100.64.0.5", 22, true, "100.64.0.0/10:22", "matches 100.64.0.0/10:22", "100.64.0.5"},
		{"::ffff:100.64.0.5", 22, true, "100.64.0.0/10:22", "matches 100.64.0.0/10:22", "100.64.0.5"},
		{"100.64.0.5", 80, false, "100.64.0.0/10:22", "port 80 not in 22", "100.64.0.5"},
		{"8.8.8.8", 53, false, "", "IP literal matches no CIDR rule", "8.8.8.8"},
		{"100.64.5", 22, false, "", "ambiguous IP literal: write it as 100.64.0.5", ""},
		{"1.2.3.4.5", 22, false, "", "ambiguous IP literal: numeric last label", ""},
		{"fe80::1%eth0", 22, false, "", "malformed IP literal: IPv6 zone not allowed", ""},
	} {
		d := l.Check(tt.host, tt.port)
		if d.Allow != tt.allow || d.Rule != tt.rule || d.Reason != tt.reason || d.Host != tt.decidedFor {
			t.Errorf("Check(%q, %d) = %+v, want {Allow:%v Rule:%q Reason:%q Host:%q}",
				tt.host, tt.port, d, tt.allow, tt.rule, tt.reason, tt.decidedFor)
		}
	}
}

func TestEmptyList(t *testing.T) {
	for _, l := range []*List{nil, {}, MustParse(""), MustParse("   ")} {
		if !l.Empty() || l.String() != "" || l.Rules() != nil {
			t.Errorf("list %#v: Empty() = %v, String() = %q, Rules() = %v", l, l.Empty(), l.String(), l.Rules())
		}
		d := l.Check("anything.example.com", 22)
		want := Decision{Allow: true, Rule: EmptyAllowlist, Reason: "empty allowlist allows everything", Host: "anything.example.com"}
		if d != want {
			t.Errorf("empty list: Check = %+v, want %+v", d, want)
		}
		if d := l.CheckResolved(netip.MustParseAddr("192.0.2.1"), 22); !d.Allow {
			t.Errorf("empty list: CheckResolved = %+v, want allow", d)
		}
		if d := l.Check("a..b", 22); d.Allow {
			t.Errorf("empty list: Check(a..b) = %+v, want a malformed-name denial", d)
		}
	}
}

// TestCheckResolved: only deny entries for addresses decide on the
// address an allowed name resolved to.
func TestCheckResolved(t *testing.T) {
	l := MustParse(".example.com,100.64.0.0/10,!10.20.0.0/16,![fd7a:115c:a1e0::/48]:22,!.example.com:23")
	for _, tt := range []struct {
		addr  netip.Addr
		port  uint16
		allow bool
		rule  string
		host  string
	}{
		{netip.MustParseAddr("100.64.0.1"), 1, true, "", ""},
		{netip.MustParseAddr("192.0.2.1"), 1, true, "", ""}, // allow rules decided on the name
		{netip.MustParseAddr("10.20.3.4"), 443, false, "!10.20.0.0/16", "10.20.3.4"},
		{netip.MustParseAddr("::ffff:10.20.3.4"), 443, false, "!10.20.0.0/16", "10.20.3.4"},
		{netip.MustParseAddr("fd7a:115c:a1e0::1"), 22, false, "![fd7a:115c:a1e0::/48]:22", "fd7a:115c:a1e0::1"},
		{netip.MustParseAddr("fd7a:115c:a1e0::1"), 23, true, "", ""}, // the name deny entry is not for addresses
		{netip.MustParseAddr("fd7a:115c:a1e0::1%eth0"), 22, false, "", ""},
		{netip.Addr{}, 1, false, "", ""},
	} {
		d := l.CheckResolved(tt.addr, tt.port)
		if d.Allow != tt.allow || d.Rule != tt.rule || d.Host != tt.host {
			t.Errorf("CheckResolved(%v, %d) = %+v, want Allow %v, Rule %q, Host %q", tt.addr, tt.port, d, tt.allow, tt.rule, tt.host)
		}
	}
	for _, l := range []*List{nil, MustParse("")} {
		if d := l.CheckResolved(netip.Addr{}, 1); d.Allow {
			t.Errorf("empty list allows the zero Addr: %+v", d)
		}
	}
}

// TestDeny: deny entries win over allow entries wherever they stand, on
// names, IP literals and ports; a deny entry whose ports miss has no
// effect; a list of deny entries alone allows the rest.
func TestDeny(t *testing.T) {
	for _, tt := range []struct {
		spec, dest string
		allow      bool
		rule       string
	}{
		{".corp.ts.net,!admin.corp.ts.net", "admin.corp.ts.net:443", false, "!admin.corp.ts.net"},
		{"!admin.corp.ts.net,.corp.ts.net", "admin.corp.ts.net:443", false, "!admin.corp.ts.net"},
		{".corp.ts.net,!admin.corp.ts.net", "Admin.Corp.TS.net.:443", false, "!admin.corp.ts.net"},
		{".corp.ts.net,!admin.corp.ts.net", "grafana.corp.ts.net:443", true, ".corp.ts.net"},
		{".corp.ts.net,!admin.corp.ts.net", "x.admin.corp.ts.net:443", true, ".corp.ts.net"}, // exact: not under it
		{"admin.corp.ts.net,!admin.corp.ts.net", "admin.corp.ts.net:80", false, "!admin.corp.ts.net"},
		{".corp.ts.net,!.internal.corp.ts.net:22", "w1.internal.corp.ts.net:22", false, "!.internal.corp.ts.net:22"},
		{".corp.ts.net,!.internal.corp.ts.net:22", "w1.internal.corp.ts.net:443", true, ".corp.ts.net"},
		{".corp.ts.net,!.internal.corp.ts.net:22", "internal.corp.ts.net:22", true, ".corp.ts.net"},
		{".corp.ts.net:443,!.internal.corp.ts.net:22-23,80", "w1.internal.corp.ts.net:80", false, "!.internal.corp.ts.net:22-23,80"},
		{"10.0.0.0/8,!10.20.0.0/16", "10.20.1.1:5432", false, "!10.20.0.0/16"},
		{"10.0.0.0/8,!10.20.0.0/16", "10.21.1.1:5432", true, "10.0.0.0/8"},
		{"10.0.0.0/8,!10.20.0.0/16", "::ffff:10.20.1.1:5432", false, "!10.20.0.0/16"},
		{"fd7a::/16,![fd7a::1]:22", "fd7a::1:22", false, "![fd7a::1]:22"},
		{"!admin.corp.ts.net", "admin.corp.ts.net:443", false, "!admin.corp.ts.net"},
		{"!admin.corp.ts.net", "grafana.corp.ts.net:443", true, EmptyAllowlist},
		{"!admin.corp.ts.net", "192.0.2.1:443", true, EmptyAllowlist},
		{"!10.20.0.0/16", "10.20.0.1:443", false, "!10.20.0.0/16"},
		{".corp.ts.net,!10.20.0.0/16", "db.corp.ts.net:5432", true, ".corp.ts.net"}, // names: see CheckResolved
		{".corp.ts.net:443,!admin.corp.ts.net:22", "admin.corp.ts.net:80", false, ".corp.ts.net:443"},
	} {
		host, port := splitDest(t, tt.dest)
		d := MustParse(tt.spec).Check(host, port)
		if d.Allow != tt.allow || d.Rule != tt.rule {
			t.Errorf("%q: Check(%q) = %+v, want Allow %v by %q", tt.spec, tt.dest, d, tt.allow, tt.rule)
		}
		if !d.Allow && strings.HasPrefix(d.Rule, "!") && d.Reason != "matches "+d.Rule {
			t.Errorf("%q: Check(%q) reason %q, want it to name the deny rule", tt.spec, tt.dest, d.Reason)
		}
	}
	err := MustParse(".corp.ts.net,!admin.corp.ts.net").Check("admin.corp.ts.net", 443).Err("admin", 443)
	if want := `dnsfilter: "admin:443" not allowed: matches !admin.corp.ts.net`; err == nil || err.Error() != want {
		t.Errorf("Err = %v, want %s", err, want)
	}
	if rule, _, _ := denial(err); rule != "!admin.corp.ts.net" {
		t.Errorf("RuleName = %q, want the deny rule", rule)
	}
}

func denial(err error) (rule, reason string, ok bool) {
	var de *DeniedError
	if !errors.As(err, &de) {
		return "", "", false
	}
	return de.RuleName(), de.DenialReason(), true
}

func TestDeniedError(t *testing.T) {
	l := MustParse(".internal.example.com")
	err := l.Check("evil.example.com", 443).Err("evil.example.com", 443)
	want := `dnsfilter: "evil.example.com:443" not allowed: no rule matches (allowlist .internal.example.com)`
	if err == nil || err.Error() != want {
		t.Fatalf("Err = %v, want %s", err, want)
	}
	var de *DeniedError
	if !errors.As(err, &de) || !de.Denied() || de.RuleName() != "" || de.DenialReason() != "no rule matches" {
		t.Errorf("Err = %#v, want a *DeniedError naming no rule, and the reason", err)
	}
	if !errors.Is(fmt.Errorf("dial: %w", err), ErrDenied) {
		t.Errorf("errors.Is(%v, ErrDenied) = false", err)
	}
	var iface interface {
		Denied() bool
		RuleName() string
	}
	if !errors.As(err, &iface) {
		t.Errorf("%T does not satisfy the socks package's denial interface", err)
	}

	l = MustParse(".internal.example.com:443,8443")
	err = l.Check("a.internal.example.com", 22).Err("a.internal.example.com", 22)
	want = `dnsfilter: "a.internal.example.com:22" not allowed: port 22 not in 443,8443 (rule .internal.example.com:443,8443)`
	if err == nil || err.Error() != want {
		t.Errorf("Err = %v, want %s", err, want)
	}
	if errors.As(err, &de); de.RuleName() != ".internal.example.com:443,8443" || de.DenialReason() != "port 22 not in 443,8443" {
		t.Errorf("RuleName() = %q, DenialReason() = %q, want the rule and the reason", de.RuleName(), de.DenialReason())
	}

	err = l.Check("fd7a::1", 22).Err("fd7a::1", 22)
	want = `dnsfilter: "[fd7a::1]:22" not allowed: IP literal matches no CIDR rule (allowlist .internal.example.com:443,8443)`
	if err == nil || err.Error() != want {
		t.Errorf("Err = %v, want %s", err, want)
	}
	err = l.Check("a\r\nb", 22).Err("a\r\nb", 22)
	want = `dnsfilter: "a\r\nb:22" not allowed: malformed name: name has a control character`
	if err == nil || err.Error() != want {
		t.Errorf("Err = %v, want %s", err, want)
	}
	if err := l.Check("a.internal.example.com", 443).Err("a.internal.example.com", 443); err != nil {
		t.Errorf("Err on an allow = %v, want nil", err)
	}

	long := MustParse(strings.Repeat(".internal.example.com,", 20) + "x.com")
	msg := long.Check("evil.com", 1).Err("evil.com", 1).Error()
	if len(msg) > 300 || !strings.HasSuffix(msg, "...)") {
		t.Errorf("error for a long allowlist is not truncated: %q", msg)
	}
}

func TestDecisionString(t *testing.T) {
	l := MustParse(".a.com:443")
	for host, want := range map[string]string{
		"x.a.com": "allow: matches .a.com:443",
		"y.b.com": "deny: no rule matches",
	} {
		if got := l.Check(host, 443).String(); got != want {
			t.Errorf("Check(%q).String() = %q, want %q", host, got, want)
		}
	}
	if got, want := l.Check("x.a.com", 80).String(), "deny: port 80 not in 443 (rule .a.com:443)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestCanonical(t *testing.T) {
	for _, tt := range []struct{ in, want, wantErr string }{
		{"Example.COM.", "example.com", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"BÜCHER.example", "xn--bcher-kva.example", ""},
		{"grаfana.example", "xn--grfana-4nf.example", ""},
		{"a．b。c｡d", "", "fullwidth or ideographic dot"},
		{"ａ.b", "", "IDNA normal form"},
		{"a\u200b.b", "", "IDNA normal form"},
		{"a.b\u3002", "", "fullwidth or ideographic dot"},
		{"_dmarc.example.com", "_dmarc.example.com", ""},
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example", ""},
		{"localhost", "localhost", ""},
		{"", "", "empty name"},
		{".", "", "empty name"},
		{"a..", "", "more than one trailing dot"},
		{".a", "", "empty label"},
		{"a b", "", "space"},
		{"127.0.0.1", "", "IP literal"},
		{"127.1", "", "IP literal"},
		{"::1", "", "':'"},
		{"a\x00b", "", "NUL"},
		{"ab--c.example", "ab--c.example", ""}, // ASCII: only xn-- labels are IDNA-checked
	} {
		got, err := Canonical(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Canonical(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestExpand(t *testing.T) {
	for _, tt := range []struct{ host, suffix, want string }{
		{"grafana", "tail1234.ts.net", "grafana.tail1234.ts.net"},
		{"grafana", "tail1234.ts.net.", "grafana.tail1234.ts.net"},
		{"grafana", ".tail1234.ts.net", "grafana.tail1234.ts.net"},
		{"grafana", "", "grafana"},
		{"grafana", ".", "grafana"},
		{"grafana.", "tail1234.ts.net", "grafana."},
		{"grafana.internal", "tail1234.ts.net", "grafana.internal"},
		{"grafana。", "tail1234.ts.net", "grafana。"},
		{"", "tail1234.ts.net", ""},
		{"100.64.0.1", "tail1234.ts.net", "100.64.0.1"},
		{"::1", "tail1234.ts.net", "::1"},
		{"[::1]", "tail1234.ts.net", "[::1]"},
		{"2130706433", "tail1234.ts.net", "2130706433"},
		{"0x7f000001", "tail1234.ts.net", "0x7f000001"},
		{"0X7F000001", "tail1234.ts.net", "0X7F000001"},
		{"99999999999", "tail1234.ts.net", "99999999999"},
		{"db-1", "tail1234.ts.net", "db-1.tail1234.ts.net"},
	} {
		if got := Expand(tt.host, tt.suffix); got != tt.want {
			t.Errorf("Expand(%q, %q) = %q, want %q", tt.host, tt.suffix, got, tt.want)
		}
	}
}

func TestParseLegacyIPv4(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":            "127.0.0.1",
		"127.1":                "127.0.0.1",
		"127.0.1":              "127.0.0.1",
		"0x7f.0.0.1":           "127.0.0.1",
		"0X7F.1":               "127.0.0.1",
		"0177.0.0.1":           "127.0.0.1",
		"2130706433":           "127.0.0.1",
		"0x7f000001":           "127.0.0.1",
		"017700000001":         "127.0.0.1",
		"0x":                   "0.0.0.0",
		"0":                    "0.0.0.0",
		"4294967295":           "255.255.255.255",
		"1.16777215":           "1.255.255.255",
		"4294967296":           "",
		"256.0.0.1":            "",
		"1.2.3.256":            "",
		"1.2.65536":            "",
		"08.0.0.1":             "",
		"1.2.3.4.5":            "",
		"1..2":                 "",
		"1.2.3.4.":             "",
		"":                     "",
		"0xg":                  "",
		"99999999999999999999": "",
	} {
		a, ok := parseLegacyIPv4(in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("parseLegacyIPv4(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	l := benchList()
	for _, host := range []string{
		"grafana.internal.example.com",
		"grafana.internal.example.com.",
		"svc-42.prod.example.net",
		"100.64.1.2",
		"fd7a:115c:a1e0::1",
		"admin.internal.example.com",
		"100.100.1.2",
	} {
		if n := testing.AllocsPerRun(100, func() { l.Check(host, 443) }); n != 0 {
			t.Errorf("Check(%q) allocates %v times per call, want 0", host, n)
		}
	}
}

// benchList is a 50-entry list in the shape we expect in production:
// suffixes and exact names with and without ports, a few prefixes, and
// deny entries for names and addresses.
func benchList() *List {
	var entries []string
	for i := range 17 {
		entries = append(entries, fmt.Sprintf(".svc%d.example.org", i))
	}
	for i := range 15 {
		entries = append(entries, fmt.Sprintf("host%d.corp.example.com:443,8443", i))
	}
	for i := range 8 {
		entries = append(entries, fmt.Sprintf("10.%d.0.0/16:22", i))
	}
	entries = append(entries,
		"fd7a:115c:a1e0::/48",
		"100.64.0.0/10",
		".prod.example.net",
		"db.internal.example.com:5432",
		".internal.example.com:443",
		"!admin.internal.example.com",
		"!.secret.prod.example.net",
		"!host3.corp.example.com:8443",
		"!100.100.0.0/16",
		"![fd7a:115c:a1e0::5]:22",
	)
	return MustParse(strings.Join(entries, ","))
}

func BenchmarkCheck(b *testing.B) {
	l := benchList()
	if n := len(l.Rules()); n != 50 {
		b.Fatalf("bench list has %d rules, want 50", n)
	}
	for _, bc := range []struct{ name, host string }{
		{"suffix", "grafana.internal.example.com"},
		{"exact", "host7.corp.example.com"},
		{"miss", "grafana.other.example.com"},
		{"cidr", "100.64.1.2"},
		{"upper", "Grafana.Internal.Example.com"},
		{"idn", "grаfana.internal.example.com"},
		{"deny", "admin.internal.example.com"},
		{"deny-suffix", "vault.secret.prod.example.net"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l.Check(bc.host, 443)
			}
		})
	}
}

// TestMalformed: the one definition of a well-formed destination, which
// Check applies before any rule and the proxy applies before Check.
func TestMalformed(t *testing.T) {
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"grafana", true},
		{"grafana.corp.ts.net", true},
		{"Grafana.Corp.TS.net.", true},
		{"_svc.corp.example", true},
		{"bücher.example", true}, // IDNA: checked as xn--bcher-kva.example
		{"xn--bcher-kva.example", true},
		{"100.64.0.1", true},
		{"fd7a:115c:a1e0::1", true},
		{"", false},
		{"-grafana.corp", false},
		{"a..b", false},
		{"a b", false},
		{"a%2eb", false},
		{"user@host", false},
		{"host/path", false},
		{"[::1]", false}, // brackets belong to host:port, not the host
		{"fe80::1%eth0", false},
		{"127.1", false},        // ambiguous IP literal
		{"ｇrafana.corp", false}, // fullwidth: not in IDNA normal form
		{"xn--99999999999.corp", false},
	} {
		r := Malformed(tt.host)
		if (r == "") != tt.ok {
			t.Errorf("Malformed(%q) = %q, want well-formed %v", tt.host, r, tt.ok)
		}
		if d := MustParse("").Check(tt.host, 443); !tt.ok && tt.host != "[::1]" && (d.Allow || d.Reason != r) {
			t.Errorf("Check(%q) = %+v, want the denial %q", tt.host, d, r)
		}
	}
}

// TestCheckAnyPort: a name is allowed when some port of it is, whatever
// the rules' port ranges and deny entries.
func TestCheckAnyPort(t *testing.T) {
	l := MustParse("web.a.test:80,443, db.a.test:5432, !db.a.test:5000-6000, .b.test:8000-9000, !x.b.test:8000-8999, !.c.test, y.c.test, 100.64.0.0/10:22")
	for _, tc := range []struct {
		host string
		want bool
		rule string
	}{
		{"web.a.test", true, "web.a.test:80,443"},
		{"db.a.test", false, "!db.a.test:5000-6000"},
		{"q.b.test", true, ".b.test:8000-9000"},
		{"x.b.test", true, ".b.test:8000-9000"}, // 9000 is left
		{"y.c.test", false, "!.c.test"},
		{"other.test", false, ""},
		{"100.64.1.2", true, "100.64.0.0/10:22"},
		{"192.0.2.1", false, ""},
		{"bad..name", false, ""},
	} {
		d := l.CheckAnyPort(tc.host)
		if d.Allow != tc.want || d.Rule != tc.rule {
			t.Errorf("CheckAnyPort(%q) = %v %q (%s), want %v %q", tc.host, d.Allow, d.Rule, d.Reason, tc.want, tc.rule)
		}
	}
	if d := (*List)(nil).CheckAnyPort("anything.test"); !d.Allow {
		t.Errorf("empty list: %v", d)
	}
}
