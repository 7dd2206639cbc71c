package dnsfilter

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// A List is a parsed allowlist. The zero value and nil are the empty list,
// which allows every well-formed destination. A List is immutable and safe
// for concurrent use.
type List struct {
	rules  []rule
	exact  map[string][]int // canonical name -> indexes of exact-name rules
	suffix map[string][]int // ".domain" -> indexes of suffix rules
	cidrs  []int            // indexes of prefix rules, in order
	spec   string
	// denyOnly: the list has deny rules and no allow rule, so what no
	// deny rule matches is allowed.
	denyOnly bool
}

type ruleKind uint8

const (
	kindExact ruleKind = iota
	kindSuffix
	kindPrefix
)

type rule struct {
	kind   ruleKind
	deny   bool   // a "!" entry
	name   string // kindExact: the name; kindSuffix: "." + domain
	prefix netip.Prefix
	ports  []portRange // sorted, merged; nil allows any port
	text   string      // canonical form, e.g. ".a.com:443,8443" or "!admin.a.com"
	reason string      // "matches " + text, built once so Check need not
	label  string      // the policy file's name for the rule, or ""
	opaque bool        // the policy file's "opaque": tunnels it allows are not inspected
}

// A Rule is one rule of a [List], as [List.Rules] reports it.
type Rule struct {
	Text string // canonical form, as in Decision.Rule: ".a.com:443", "!admin.a.com"
	Name string // the policy file's name for it, "" if none (see ParsePolicy)
	Deny bool   // a deny entry
	// Opaque marks an allow rule whose tunnels are spliced without looking
	// at the TLS SNI or HTTP Host inside them (a policy file's "opaque").
	Opaque bool
}

type portRange struct{ lo, hi uint16 }

// ParseError is the error Parse returns for an entry it cannot read.
type ParseError struct {
	Entry  int    // 1-based position of the entry in the comma-separated spec
	Text   string // the entry, without surrounding spaces
	Reason string // what is wrong with it
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("dnsfilter: entry %d %q: %s", e.Entry, e.Text, e.Reason)
}

// Parse parses a comma-separated allowlist (see the package comment for the
// syntax). A spec that is empty or only white space yields the empty list,
// which allows everything. Any entry it cannot read in full is a
// [*ParseError]; Parse never skips one.
func Parse(spec string) (*List, error) {
	l := new(List)
	if err := l.add(spec, "", anyEntries); err != nil {
		return nil, err
	}
	l.index()
	return l, nil
}

// The entries add accepts: allow and "!" deny entries, as in Parse, or the
// entries of a policy file's allow or deny rule, which have no "!".
type entryMode uint8

const (
	anyEntries entryMode = iota
	allowEntries
	denyEntries
)

// add parses the entries of spec into l's rules, naming each label.
func (l *List) add(spec, label string, mode entryMode) error {
	if strings.TrimSpace(spec) == "" {
		return nil
	}
	// cont is the rule a bare port entry continues: the previous entry's,
	// if that entry had ports.
	cont := -1
	for i, raw := range strings.Split(spec, ",") {
		e := strings.TrimSpace(raw)
		perr := func(format string, args ...any) error {
			return &ParseError{Entry: i + 1, Text: e, Reason: fmt.Sprintf(format, args...)}
		}
		if e == "" {
			return perr("empty entry")
		}
		if isPortEntry(e) {
			if cont < 0 {
				return perr("port with no host:port entry before it (write ports after a host, as in .example.com:443,8443)")
			}
			pr, err := parsePortRange(e)
			if err != nil {
				return perr("%s", err)
			}
			l.rules[cont].ports = append(l.rules[cont].ports, pr)
			continue
		}
		body, deny := strings.CutPrefix(e, "!")
		switch {
		case deny && mode == denyEntries:
			return perr("no '!' in a deny rule: its entries are all deny entries")
		case deny && mode == allowEntries:
			return perr("a deny entry in an allow rule: write it as a rule of its own, \"deny\": %q", body)
		case deny && body == "":
			return perr("'!' with no entry after it")
		}
		r, err := parseRule(body)
		if err != nil {
			return perr("%s", err)
		}
		r.deny, r.label = deny || mode == denyEntries, label
		l.rules = append(l.rules, r)
		cont = -1
		if r.ports != nil {
			cont = len(l.rules) - 1
		}
	}
	return nil
}

// MustParse is like Parse but panics on error. It is for allowlists in
// code and tests.
func MustParse(spec string) *List {
	l, err := Parse(spec)
	if err != nil {
		panic(err)
	}
	return l
}

// index canonicalises each rule's ports and text and builds the lookup
// tables Check uses.
func (l *List) index() {
	texts := make([]string, len(l.rules))
	l.denyOnly = len(l.rules) > 0
	for i := range l.rules {
		r := &l.rules[i]
		r.ports = mergePorts(r.ports)
		r.text = r.format()
		r.reason = "matches " + r.text
		texts[i] = r.text
		if !r.deny {
			l.denyOnly = false
		}
		switch r.kind {
		case kindExact:
			if l.exact == nil {
				l.exact = make(map[string][]int)
			}
			l.exact[r.name] = append(l.exact[r.name], i)
		case kindSuffix:
			if l.suffix == nil {
				l.suffix = make(map[string][]int)
			}
			l.suffix[r.name] = append(l.suffix[r.name], i)
		case kindPrefix:
			l.cidrs = append(l.cidrs, i)
		}
	}
	l.spec = strings.Join(texts, ",")
}

// Empty reports whether l has no rules; l may be nil.
func (l *List) Empty() bool { return l == nil || len(l.rules) == 0 }

// String returns the canonical spec: the canonical rules joined by commas.
// Parse(l.String()) yields an equivalent list with the same String (a
// policy file's rule names are not part of it).
func (l *List) String() string {
	if l == nil {
		return ""
	}
	return l.spec
}

// Rules returns each rule, in list order.
func (l *List) Rules() []Rule {
	if l.Empty() {
		return nil
	}
	out := make([]Rule, len(l.rules))
	for i := range l.rules {
		r := &l.rules[i]
		out[i] = Rule{Text: r.text, Name: r.label, Deny: r.deny, Opaque: r.opaque}
	}
	return out
}

// isPortEntry reports whether e is a bare port or port range, which
// continues the port list of the entry before it.
func isPortEntry(e string) bool {
	if e[0] < '0' || e[0] > '9' {
		return false
	}
	for i := 0; i < len(e); i++ {
		if (e[i] < '0' || e[i] > '9') && e[i] != '-' {
			return false
		}
	}
	return true
}

func parseRule(e string) (rule, error) {
	var r rule
	host, ports := e, ""
	switch {
	case e[0] == '[':
		end := strings.IndexByte(e, ']')
		if end < 0 {
			return r, fmt.Errorf("'[' without ']'")
		}
		host, ports = e[1:end], e[end+1:]
		if ports != "" {
			if ports[0] != ':' {
				return r, fmt.Errorf("unexpected %q after ']'", ports)
			}
			ports = ports[1:]
			if ports == "" {
				return r, fmt.Errorf("empty port after ':'")
			}
		}
		if !strings.Contains(host, ":") {
			return r, fmt.Errorf("brackets are only for IPv6 addresses and prefixes")
		}
	case strings.Count(e, ":") == 1:
		c := strings.IndexByte(e, ':')
		host, ports = e[:c], e[c+1:]
		if ports == "" {
			return r, fmt.Errorf("empty port after ':'")
		}
		if host == "" {
			return r, fmt.Errorf("port with no host")
		}
	case strings.Contains(e, ":"):
		// Two or more colons: an IPv6 address or prefix, and all the
		// colons are its own.
	}
	if ports != "" {
		pr, err := parsePortRange(ports)
		if err != nil {
			return r, err
		}
		r.ports = []portRange{pr}
	}
	if strings.Contains(host, ":") {
		p, err := parsePrefix(host)
		if err != nil {
			if c := strings.LastIndexByte(host, ':'); e[0] != '[' && c > 0 {
				if _, perr := parsePrefix(host[:c]); perr == nil {
					return r, fmt.Errorf("%v (an IPv6 address with ports needs brackets, as in [fd7a::/48]:22)", err)
				}
			}
			return r, err
		}
		r.kind, r.prefix = kindPrefix, p
		return r, nil
	}
	if isIPv4ish(host) {
		p, err := parsePrefix(host)
		if err != nil {
			return r, err
		}
		r.kind, r.prefix = kindPrefix, p
		return r, nil
	}
	return parseNameRule(r, host)
}

// isIPv4ish reports whether host should be read as an IPv4 address or
// prefix rather than a name: dotted decimal, with an optional /bits.
func isIPv4ish(host string) bool {
	addr, _, hasSlash := strings.Cut(host, "/")
	if hasSlash {
		_, err := netip.ParseAddr(addr)
		return err == nil || isDottedDecimal(addr)
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

func isDottedDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return s != ""
}

// parsePrefix parses an address or prefix rule strictly: no zone, no
// IPv4-mapped form, no host bits set.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("IPv6 zones are not allowed")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("bad prefix: %v", unwrapNetip(err))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("bad address: %v", unwrapNetip(err))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return p, fmt.Errorf("IPv4-mapped IPv6 is not allowed: write the IPv4 address (checked addresses are unmapped first)")
	}
	if m := p.Masked(); m != p {
		return p, fmt.Errorf("prefix has host bits set: did you mean %s?", m)
	}
	return p, nil
}

// unwrapNetip trims the `netip.ParseAddr("...")` preamble, which repeats
// the entry that ParseError already quotes.
func unwrapNetip(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 && strings.HasPrefix(msg, "netip.") {
		return msg[i+3:]
	}
	return msg
}

func parseNameRule(r rule, host string) (rule, error) {
	r.kind = kindExact
	name := host
	switch {
	case strings.HasPrefix(name, "*."):
		r.kind, name = kindSuffix, name[2:]
	case strings.HasPrefix(name, "."):
		r.kind, name = kindSuffix, name[1:]
	case host == "*":
		return r, fmt.Errorf("'*' alone is not a rule: an empty allowlist allows everything")
	}
	if name == "" {
		return r, fmt.Errorf("no domain after the leading dot")
	}
	c, reason := canonicalName(name)
	if reason != "" {
		return r, fmt.Errorf("%s", reason)
	}
	if isNumericLabel(lastLabel(c)) {
		if a, ok := parseLegacyIPv4(c); ok && r.kind == kindExact {
			return r, fmt.Errorf("not a name: an IPv4 address must be written in dotted-decimal form, %s", a)
		}
		return r, fmt.Errorf("numeric last label: it could only match IP literals, which name rules never match")
	}
	if r.kind == kindExact && isPortEntry(c) {
		// "80-90." would print as 80-90, which reads as a port range.
		return r, fmt.Errorf("a name of digits and '-' alone reads as a port range: write the full name")
	}
	r.name = c
	if r.kind == kindSuffix {
		r.name = "." + c
	}
	return r, nil
}

func parsePortRange(s string) (portRange, error) {
	loS, hiS, isRange := strings.Cut(s, "-")
	lo, err := parsePort(loS)
	if err != nil {
		return portRange{}, err
	}
	hi := lo
	if isRange {
		if hi, err = parsePort(hiS); err != nil {
			return portRange{}, err
		}
		if hi < lo {
			return portRange{}, fmt.Errorf("port range %d-%d is backwards", lo, hi)
		}
	}
	return portRange{lo, hi}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad port %q: not a number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return 0, fmt.Errorf("port %s out of range 1-65535", s)
	}
	return uint16(n), nil
}

// mergePorts sorts port ranges and merges overlapping and adjacent ones,
// so that equal port sets have equal text.
func mergePorts(ps []portRange) []portRange {
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, func(a, b portRange) int { return int(a.lo) - int(b.lo) })
	out := ps[:1]
	for _, p := range ps[1:] {
		last := &out[len(out)-1]
		if int(p.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, p.hi)
			continue
		}
		out = append(out, p)
	}
	return slices.Clip(out)
}

func formatPorts(ps []portRange) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p.lo)))
		if p.hi != p.lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(p.hi)))
		}
	}
	return b.String()
}

func (r *rule) format() string {
	var host string
	switch r.kind {
	case kindExact, kindSuffix:
		host = r.name
	case kindPrefix:
		if r.prefix.IsSingleIP() {
			host = r.prefix.Addr().String()
		} else {
			host = r.prefix.String()
		}
		if r.ports != nil && r.prefix.Addr().Is6() {
			host = "[" + host + "]"
		}
	}
	if r.deny {
		host = "!" + host
	}
	if r.ports == nil {
		return host
	}
	return host + ":" + formatPorts(r.ports)
}

// allowsPort reports whether r allows port.
func (r *rule) allowsPort(port uint16) bool {
	if r.ports == nil {
		return true
	}
	for _, p := range r.ports {
		if p.lo <= port && port <= p.hi {
			return true
		}
	}
	return false
}
