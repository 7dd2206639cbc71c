package dnsfilter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// EmptyAllowlist is the Decision.Rule of every decision by an empty list.
const EmptyAllowlist = "<empty allowlist>"

// Reasons for decisions that name no rule.
const (
	reasonNoMatch     = "no rule matches"
	reasonNoCIDR      = "IP literal matches no CIDR rule"
	reasonEmptyList   = "empty allowlist allows everything"
	reasonDenyOnly    = "no deny rule matches (the list has no allow rules)"
	reasonMalformed   = "malformed name: "
	reasonBadIP       = "malformed IP literal: "
	reasonZone        = reasonBadIP + "IPv6 zone not allowed"
	reasonBadBrackets = reasonBadIP + "brackets must hold an IPv6 address and nothing else"
	reasonInvalidAddr = "invalid IP address"
)

// A Decision is the allowlist's verdict on one destination.
type Decision struct {
	Allow  bool
	Rule   string // the rule that decided (canonical form), or "" when no rule matched
	Name   string // the policy file's name for Rule, "" if it has none
	Reason string // short human reason, e.g. "matches .internal.example.com", "no rule matches"
	// Opaque is set when the allow rule that decided is marked "opaque" in
	// its policy file: what a tunnel it allows carries is not inspected.
	Opaque bool

	// Host is the destination as it was checked: the canonical name (see
	// Canonical) or the IP address in standard, unmapped form; "" when
	// the host was malformed. A caller that dials after an allow should
	// dial Host: it is what the rule matched.
	Host string

	// list is the allowlist, kept on "no rule matches" denials so that
	// DeniedError can say what would have been allowed.
	list string
}

// String returns "allow: <reason>" or "deny: <reason>", naming the rule
// when the reason does not.
func (d Decision) String() string {
	verdict := "deny"
	if d.Allow {
		verdict = "allow"
	}
	s := verdict + ": " + d.Reason
	if d.Rule != "" && !strings.Contains(d.Reason, d.Rule) {
		s += " (rule " + d.Rule + ")"
	}
	return s
}

// Err returns nil when d allows, and otherwise a [*DeniedError] for host and
// port, which should be the destination as the client asked for it.
func (d Decision) Err(host string, port uint16) error {
	if d.Allow {
		return nil
	}
	return &DeniedError{Host: host, Port: port, Rule: d.Rule, Name: d.Name, Reason: d.Reason, Allowlist: d.list}
}

// ErrDenied matches every [*DeniedError] with errors.Is.
var ErrDenied = errors.New("dnsfilter: destination not allowed")

// DeniedError reports a destination the allowlist denies.
type DeniedError struct {
	Host   string
	Port   uint16
	Rule   string // the rule that decided, or ""
	Name   string // the policy file's name for Rule, or ""
	Reason string // why, as in Decision.Reason

	// Allowlist is the list's canonical spec when no rule matched the
	// host at all, so the message can say what is allowed; else "".
	Allowlist string
}

// maxListInError bounds how much of a long allowlist an error quotes.
const maxListInError = 200

func (e *DeniedError) Error() string {
	host := e.Host
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1] // JoinHostPort adds them back
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(e.Port)))
	msg := fmt.Sprintf("dnsfilter: %q not allowed: %s", target, e.Reason)
	switch {
	case e.Rule != "" && !strings.Contains(e.Reason, e.Rule):
		msg += " (rule " + e.Rule + e.quotedName() + ")"
	case e.Name != "":
		msg += " (rule" + e.quotedName() + ")"
	case e.Rule == "" && e.Allowlist != "":
		list := e.Allowlist
		if len(list) > maxListInError {
			list = list[:maxListInError] + "..."
		}
		msg += " (allowlist " + list + ")"
	}
	return msg
}

func (e *DeniedError) quotedName() string {
	if e.Name == "" {
		return ""
	}
	return " " + strconv.Quote(e.Name)
}

// Denied reports true. Other packages detect denials through the interface
// interface{ Denied() bool; RuleName() string } without importing dnsfilter.
func (e *DeniedError) Denied() bool { return true }

// RuleName returns the rule that decided, "" when none did (no rule
// matches, a malformed name).
func (e *DeniedError) RuleName() string { return e.Rule }

// DenialReason returns the short reason: "no rule matches", "port 22 not
// in 443", "malformed name: …".
func (e *DeniedError) DenialReason() string { return e.Reason }

// Is reports whether target is ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Check decides on a destination host, a DNS name or an IP literal, and
// port. Names must already be absolute: expand MagicDNS short names with
// [Expand] first. Malformed names and ambiguous IP literals are denied by
// every list; a nil or empty list allows everything else. For a valid
// lower-case ASCII name Check does not allocate.
func (l *List) Check(host string, port uint16) Decision {
	if host == "" {
		return malformed(reasonMalformed + reasonEmptyName)
	}
	if host[0] == '[' {
		inner := host[1:]
		if !strings.HasSuffix(inner, "]") {
			return malformed(reasonBadBrackets)
		}
		inner = inner[:len(inner)-1]
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is6() {
			return malformed(reasonBadBrackets)
		}
		return l.checkIP(a, port, inner)
	}
	if strings.IndexByte(host, ':') >= 0 {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return malformed(reasonMalformed + reasonColon)
		}
		return l.checkIP(a, port, host)
	}
	if c := host[0]; '0' <= c && c <= '9' {
		if a, err := netip.ParseAddr(host); err == nil {
			return l.checkIP(a, port, host)
		}
	}
	name, reason := canonicalName(host)
	if reason != "" {
		return malformed(reasonMalformed + reason)
	}
	if isNumericLabel(lastLabel(name)) {
		// 127.1, 0x7f.0.0.1, 2130706433, 127.0.0.1. and the like: a libc
		// resolver may read them as addresses, another resolver as names.
		return malformed(ambiguousReason(name))
	}
	if l.Empty() {
		return Decision{Allow: true, Rule: EmptyAllowlist, Reason: reasonEmptyList, Host: name}
	}
	return l.checkName(name, port)
}

// Malformed returns why host, a destination as a client sent it (a DNS
// name or an IP literal, without brackets: the host of a host:port), is
// not well-formed, or "" if it is. It is the one definition tsconnect applies
// everywhere, before any rule: Check denies what it refuses with this
// reason whatever the list, and the proxy refuses such a host before
// anything else sees it. Names in any case, with one trailing dot, and
// international names in IDNA normal form are well-formed; a short name
// ("grafana") is, though Check wants it expanded first.
func Malformed(host string) string {
	if i := strings.IndexAny(host, "[]"); i >= 0 {
		return reasonMalformed + badChar(host[i])
	}
	if d := (*List)(nil).Check(host, 1); !d.Allow {
		return d.Reason
	}
	return ""
}

// CheckResolved decides on addr, an address that a name Check allowed
// resolved to, and port: only deny rules for addresses (!10.20.0.0/16)
// apply, since the allow rules have decided on the name. IPv4-mapped IPv6
// addresses are unmapped first; an invalid address or one with a zone is
// denied. The connector denies a name when CheckResolved denies any of
// its addresses, not only the one it would dial: a tailnet node has an
// IPv6 address beside the IPv4 address a rule names.
func (l *List) CheckResolved(addr netip.Addr, port uint16) Decision {
	if !addr.IsValid() {
		return malformed(reasonInvalidAddr)
	}
	if addr.Zone() != "" {
		return malformed(reasonZone)
	}
	addr = addr.Unmap()
	if l != nil {
		if m := l.matchAddr(addr, port); m.deny >= 0 {
			d := l.decide(m.deny)
			d.Host = addr.String()
			d.Reason = "address " + d.Host + " " + d.Reason
			return d
		}
	}
	return Decision{Allow: true, Reason: "no deny rule matches the address"}
}

// checkIP is Check for an IP literal; text is the literal without brackets.
func (l *List) checkIP(a netip.Addr, port uint16, text string) Decision {
	if a.Zone() != "" {
		return malformed(reasonZone)
	}
	a = a.Unmap()
	d := l.checkAddr(a, port)
	var buf [64]byte
	if b := a.AppendTo(buf[:0]); string(b) == text {
		d.Host = text // already canonical: no need to allocate
	} else {
		d.Host = a.String()
	}
	return d
}

func (l *List) checkAddr(a netip.Addr, port uint16) Decision {
	if l.Empty() {
		return Decision{Allow: true, Rule: EmptyAllowlist, Reason: reasonEmptyList}
	}
	return l.verdict(l.matchAddr(a, port), port, reasonNoCIDR)
}

// checkName matches a canonical name against the name rules.
func (l *List) checkName(name string, port uint16) Decision {
	d := l.verdict(l.matchName(name, port), port, reasonNoMatch)
	d.Host = name
	return d
}

// verdict turns what matched into the decision: a matching deny rule
// denies; else the first allow rule in list order that matches host and
// port allows; else the first that matches the host names the denial.
func (l *List) verdict(m match, port uint16, noMatch string) Decision {
	switch {
	case m.deny >= 0:
		return l.decide(m.deny)
	case l.denyOnly:
		return Decision{Allow: true, Rule: EmptyAllowlist, Reason: reasonDenyOnly}
	case m.allow >= 0:
		return l.decide(m.allow)
	case m.miss >= 0:
		return l.portDenied(m.miss, port)
	}
	return Decision{Reason: noMatch, list: l.spec}
}

// match is what matched one destination: the first deny rule and the
// first allow rule in list order that match host and port, and the first
// allow rule that matches the host but not the port; -1 for none.
type match struct{ deny, allow, miss int }

// add considers rule i, which matches the host.
func (m *match) add(rules []rule, i int, port uint16) {
	r := &rules[i]
	switch {
	case !r.allowsPort(port):
		if !r.deny && (m.miss < 0 || i < m.miss) {
			m.miss = i
		}
	case r.deny:
		if m.deny < 0 || i < m.deny {
			m.deny = i
		}
	case m.allow < 0 || i < m.allow:
		m.allow = i
	}
}

func (l *List) matchName(name string, port uint16) match {
	m := match{-1, -1, -1}
	if l.exact != nil {
		for _, i := range l.exact[name] {
			m.add(l.rules, i, port)
		}
	}
	if l.suffix != nil {
		// A suffix rule ".example.com" matches the name's tails that
		// start at a dot, so "a.example.com" matches but "example.com"
		// and "evilexample.com" do not.
		for i := 1; i < len(name); i++ {
			if name[i] == '.' {
				for _, j := range l.suffix[name[i:]] {
					m.add(l.rules, j, port)
				}
			}
		}
	}
	return m
}

func (l *List) matchAddr(a netip.Addr, port uint16) match {
	m := match{-1, -1, -1}
	for _, i := range l.cidrs {
		if l.rules[i].prefix.Contains(a) {
			m.add(l.rules, i, port)
		}
	}
	return m
}

// decide is the decision of rule i, which matched.
func (l *List) decide(i int) Decision {
	r := &l.rules[i]
	return Decision{Allow: !r.deny, Rule: r.text, Name: r.label, Reason: r.reason, Opaque: r.opaque}
}

func (l *List) portDenied(i int, port uint16) Decision {
	r := &l.rules[i]
	return Decision{Rule: r.text, Name: r.label, Reason: fmt.Sprintf("port %d not in %s", port, formatPorts(r.ports))}
}

func malformed(reason string) Decision { return Decision{Reason: reason} }

// CheckAnyPort is Check for a destination whose port is not known yet,
// such as a DNS query: the decision of Check on the first port on which it
// allows host, or its denial of host on every port (a name only deny
// rules or rules with other ports match, an IP literal no CIDR rule
// allows). Names must be absolute, as for Check.
func (l *List) CheckAnyPort(host string) Decision {
	first := l.Check(host, 1)
	if first.Allow || first.Host == "" || l.Empty() {
		return first
	}
	// The decision changes only where a matching rule's port range starts
	// or ends: those ports, and 1, cover every case.
	var ports []uint16
	edges := func(r *rule) {
		for _, p := range r.ports {
			ports = append(ports, p.lo)
			if p.hi < 65535 {
				ports = append(ports, p.hi+1)
			}
		}
	}
	if a, err := netip.ParseAddr(first.Host); err == nil {
		for _, i := range l.cidrs {
			if l.rules[i].prefix.Contains(a) {
				edges(&l.rules[i])
			}
		}
	} else {
		for _, i := range l.exact[first.Host] {
			edges(&l.rules[i])
		}
		for i := 1; i < len(first.Host); i++ {
			if first.Host[i] == '.' {
				for _, j := range l.suffix[first.Host[i:]] {
					edges(&l.rules[j])
				}
			}
		}
	}
	denial := first
	for _, p := range ports {
		d := l.Check(host, p)
		if d.Allow {
			return d
		}
		if strings.HasPrefix(d.Rule, "!") && !strings.HasPrefix(denial.Rule, "!") {
			denial = d // a deny rule says more than "port 1 not in …"
		}
	}
	return denial
}
