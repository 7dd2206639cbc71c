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
	reasonNoCIDRAddr  = "IP address matches no CIDR rule"
	reasonEmptyList   = "empty allowlist allows everything"
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
	Reason string // short human reason, e.g. "matches .internal.example.com", "no rule matches"

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
	return &DeniedError{Host: host, Port: port, Rule: d.Rule, Reason: d.Reason, Allowlist: d.list}
}

// ErrDenied matches every [*DeniedError] with errors.Is.
var ErrDenied = errors.New("dnsfilter: destination not allowed")

// DeniedError reports a destination the allowlist denies.
type DeniedError struct {
	Host   string
	Port   uint16
	Rule   string // the rule that decided, or ""
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
		msg += " (rule " + e.Rule + ")"
	case e.Rule == "" && e.Allowlist != "":
		list := e.Allowlist
		if len(list) > maxListInError {
			list = list[:maxListInError] + "..."
		}
		msg += " (allowlist " + list + ")"
	}
	return msg
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

// CheckAddr decides on an IP destination, such as an address a name
// resolved to, against the prefix rules only. IPv4-mapped IPv6 addresses
// are unmapped first; addresses with a zone are denied. A nil or empty list
// allows every valid address.
func (l *List) CheckAddr(addr netip.Addr, port uint16) Decision {
	if !addr.IsValid() {
		return malformed(reasonInvalidAddr)
	}
	if addr.Zone() != "" {
		return malformed(reasonZone)
	}
	addr = addr.Unmap()
	d := l.checkAddr(addr, port, reasonNoCIDRAddr)
	d.Host = addr.String()
	return d
}

// checkIP is Check for an IP literal; text is the literal without brackets.
func (l *List) checkIP(a netip.Addr, port uint16, text string) Decision {
	if a.Zone() != "" {
		return malformed(reasonZone)
	}
	a = a.Unmap()
	d := l.checkAddr(a, port, reasonNoCIDR)
	var buf [64]byte
	if b := a.AppendTo(buf[:0]); string(b) == text {
		d.Host = text // already canonical: no need to allocate
	} else {
		d.Host = a.String()
	}
	return d
}

func (l *List) checkAddr(a netip.Addr, port uint16, noMatch string) Decision {
	if l.Empty() {
		return Decision{Allow: true, Rule: EmptyAllowlist, Reason: reasonEmptyList}
	}
	miss := -1
	for _, i := range l.cidrs {
		r := &l.rules[i]
		if !r.prefix.Contains(a) {
			continue
		}
		if r.allowsPort(port) {
			return Decision{Allow: true, Rule: r.text, Reason: r.reason}
		}
		if miss < 0 {
			miss = i
		}
	}
	if miss >= 0 {
		return l.portDenied(miss, port)
	}
	return Decision{Reason: noMatch, list: l.spec}
}

// checkName matches a canonical name against the name rules: the first
// rule in list order that matches name and port allows.
func (l *List) checkName(name string, port uint16) Decision {
	best, miss := -1, -1
	consider := func(idx []int) {
		for _, i := range idx {
			switch {
			case l.rules[i].allowsPort(port):
				if best < 0 || i < best {
					best = i
				}
			case miss < 0 || i < miss:
				miss = i
			}
		}
	}
	if l.exact != nil {
		consider(l.exact[name])
	}
	if l.suffix != nil {
		// A suffix rule ".example.com" matches the name's tails that
		// start at a dot, so "a.example.com" matches but "example.com"
		// and "evilexample.com" do not.
		for i := 1; i < len(name); i++ {
			if name[i] == '.' {
				consider(l.suffix[name[i:]])
			}
		}
	}
	switch {
	case best >= 0:
		r := &l.rules[best]
		return Decision{Allow: true, Rule: r.text, Reason: r.reason, Host: name}
	case miss >= 0:
		d := l.portDenied(miss, port)
		d.Host = name
		return d
	}
	return Decision{Reason: reasonNoMatch, Host: name, list: l.spec}
}

func (l *List) portDenied(i int, port uint16) Decision {
	r := &l.rules[i]
	return Decision{Rule: r.text, Reason: fmt.Sprintf("port %d not in %s", port, formatPorts(r.ports))}
}

func malformed(reason string) Decision { return Decision{Reason: reason} }
