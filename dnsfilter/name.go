package dnsfilter

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Canonical returns host as a canonical DNS name: lower case, non-ASCII
// labels converted to punycode A-labels by IDNA (Lookup profile), one
// trailing dot removed. It fails for malformed names (see the package
// comment) and for IP literals, including the legacy forms such as 127.1.
func Canonical(host string) (string, error) {
	name, reason := canonicalName(host)
	if reason != "" {
		return "", fmt.Errorf("dnsfilter: malformed name %q: %s", host, reason)
	}
	if isNumericLabel(lastLabel(name)) {
		return "", fmt.Errorf("dnsfilter: %q is an IP literal, not a name", host)
	}
	return name, nil
}

// Expand turns a single-label name such as "grafana" into
// "grafana.<suffix>", the way MagicDNS would. Names with a dot (including a
// trailing one, or a fullwidth dot such as U+3002), IP literals, numeric labels,
// the empty host and an empty suffix are returned unchanged. The suffix may
// be written with or without leading and trailing dots.
func Expand(host, suffix string) string {
	suffix = strings.Trim(suffix, ".")
	if host == "" || suffix == "" ||
		strings.ContainsAny(host, ".:[]%\u3002\uff0e\uff61") ||
		isNumericLabel(strings.ToLower(host)) {
		return host
	}
	if _, ok := parseLegacyIPv4(host); ok {
		return host
	}
	return host + "." + suffix
}

// Limits from RFC 1035, in bytes of the A-label form without the root dot.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// Reasons a name is malformed. They are constants so that Check can report
// them without allocating.
const (
	reasonEmptyName     = "empty name"
	reasonEmptyLabel    = "empty label"
	reasonTrailingDots  = "more than one trailing dot"
	reasonLongLabel     = "label longer than 63 bytes"
	reasonLongName      = "name longer than 253 bytes"
	reasonHyphen        = "label starts or ends with '-'"
	reasonSpace         = "name has a space"
	reasonNUL           = "name has a NUL byte"
	reasonControl       = "name has a control character"
	reasonBadPunycode   = "label starting xn-- is not valid punycode"
	reasonStar          = "'*' is only allowed as a leading \"*.\""
	reasonColon         = "name has ':' (not an IPv6 literal)"
	reasonInvalidUTF8   = "name is not valid UTF-8"
	reasonWideDot       = "name has a fullwidth or ideographic dot"
	reasonIDNAMapped    = "name is not in IDNA normal form (fullwidth, invisible or unnormalized characters)"
	reasonIDNAPrefix    = "invalid international name: "
	reasonAmbiguousIP   = "ambiguous IP literal: write it as "
	reasonNumericTLD    = "ambiguous IP literal: numeric last label"
	reasonBadCharPrefix = "name has "
)

// canonicalName is Canonical without the IP literal check and without
// allocating an error: reason is "" on success. For a valid ASCII name in
// lower case it does not allocate.
func canonicalName(host string) (name, reason string) {
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return canonicalIDNA(host)
		}
	}
	return canonicalASCII(host)
}

// canonicalIDNA converts a name with non-ASCII bytes to A-labels with IDNA
// and then validates the ASCII result like any other name.
func canonicalIDNA(host string) (string, string) {
	if !utf8.ValidString(host) {
		return "", reasonInvalidUTF8
	}
	a, err := idna.Lookup.ToASCII(host)
	if err != nil {
		return "", reasonIDNAPrefix + err.Error()
	}
	for i := 0; i < len(a); i++ {
		if a[i] >= 0x80 {
			// ToASCII promises ASCII; never compare anything else.
			return "", reasonIDNAPrefix + "not ASCII after conversion"
		}
	}
	// IDNA maps fullwidth letters to ASCII, the dots U+3002, U+FF0E and
	// U+FF61 to '.', and drops invisible characters such as U+200B. We
	// refuse every name that mapping changes beyond case: whoever resolves
	// the raw string may not map it the same way (a wildcard record could
	// answer for "grafana\u200b.example.com"), so the name checked and the
	// name dialed could differ.
	if u, err := idna.Lookup.ToUnicode(a); err != nil || u != strings.ToLower(host) {
		if strings.ContainsAny(host, "\u3002\uff0e\uff61") {
			return "", reasonWideDot
		}
		return "", reasonIDNAMapped
	}
	return canonicalASCII(a)
}

// canonicalASCII validates and lower-cases an ASCII name and strips one
// trailing dot. It allocates only to lower-case.
func canonicalASCII(host string) (string, string) {
	if host == "" || host == "." {
		return "", reasonEmptyName
	}
	s := host
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
		if s[len(s)-1] == '.' {
			return "", reasonTrailingDots
		}
	}
	if len(s) > maxNameLen {
		return "", reasonLongName
	}
	upper, puny := false, false
	start := 0 // start of the current label
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			label := s[start:i]
			switch {
			case label == "":
				return "", reasonEmptyLabel
			case len(label) > maxLabelLen:
				return "", reasonLongLabel
			case label[0] == '-' || label[len(label)-1] == '-':
				return "", reasonHyphen
			case len(label) >= 4 && (label[0]|0x20) == 'x' && (label[1]|0x20) == 'n' && label[2] == '-' && label[3] == '-':
				puny = true
			}
			start = i + 1
			continue
		}
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			upper = true
		case c == ' ':
			return "", reasonSpace
		case c == 0:
			return "", reasonNUL
		case c < 0x20 || c == 0x7f:
			return "", reasonControl
		case c == '*':
			return "", reasonStar
		case c == ':':
			return "", reasonColon
		default:
			return "", badChar(c)
		}
	}
	if upper {
		s = strings.ToLower(s)
	}
	if puny {
		for label := range strings.SplitSeq(s, ".") {
			if !strings.HasPrefix(label, "xn--") {
				continue
			}
			// Lookup decodes the label, rejects invalid or all-ASCII
			// punycode and checks the decoded label as it would a
			// Unicode one; a valid A-label comes back unchanged.
			if a, err := idna.Lookup.ToASCII(label); err != nil || a != label {
				return "", reasonBadPunycode
			}
		}
	}
	return s, ""
}

// badChar describes a byte not allowed in a name. The strings are built
// once so that denials on hostile input stay cheap.
func badChar(c byte) string { return badCharReasons[c] }

var badCharReasons = func() (r [256]string) {
	for c := range r {
		r[c] = reasonBadCharPrefix + fmt.Sprintf("%q", rune(c))
	}
	return r
}()

// lastLabel returns the last label of a canonical name.
func lastLabel(name string) string {
	return name[strings.LastIndexByte(name, '.')+1:]
}

// isNumericLabel reports whether label reads as a number to inet_aton:
// decimal digits, or 0x followed by hex digits (possibly none). label must
// be lower case.
func isNumericLabel(label string) bool {
	if label == "" {
		return false
	}
	if strings.HasPrefix(label, "0x") {
		for i := 2; i < len(label); i++ {
			if !isHex(label[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(label); i++ {
		if label[i] < '0' || label[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// ambiguousReason is the reason to deny a name whose last label is numeric.
func ambiguousReason(name string) string {
	if a, ok := parseLegacyIPv4(name); ok {
		return reasonAmbiguousIP + a.String()
	}
	return reasonNumericTLD
}

// parseLegacyIPv4 parses s as BSD and glibc inet_aton do: one to four parts
// separated by dots, each decimal, octal (leading 0) or hex (leading 0x);
// the last part fills the remaining bytes, so 127.1 is 127.0.0.1 and
// 2130706433 is too.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	var parts [4]uint64
	n := 0
	for {
		if n == len(parts) {
			return netip.Addr{}, false
		}
		base, digits := uint64(10), 0
		if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
			base, s = 16, s[2:]
			digits = 1 // glibc reads a bare "0x" as 0
		} else if len(s) >= 1 && s[0] == '0' {
			base = 8
		}
		var v uint64
		i := 0
		for ; i < len(s) && s[i] != '.'; i++ {
			d := digitValue(s[i])
			if d >= base {
				return netip.Addr{}, false
			}
			v = v*base + d
			if v > 0xffffffff {
				return netip.Addr{}, false
			}
			digits++
		}
		if digits == 0 {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	var v uint32
	for i := range n - 1 {
		if parts[i] > 0xff {
			return netip.Addr{}, false
		}
		v |= uint32(parts[i]) << (24 - 8*i)
	}
	last := parts[n-1]
	if last > 0xffffffff>>(8*(n-1)) {
		return netip.Addr{}, false
	}
	v |= uint32(last)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func digitValue(c byte) uint64 {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0')
	case 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return uint64(c-'A') + 10
	}
	return 99
}
