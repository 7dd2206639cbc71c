// Package dnsfilter is tsconnect's destination allowlist. It is pure policy:
// it never resolves a name, opens a socket or imports tsnet. The connector
// and the proxy ask it before they resolve or dial anything.
//
// # Syntax
//
// An allowlist is a comma-separated list of entries. Spaces around entries
// are ignored. A spec that is empty or only white space is the empty list,
// which allows every well-formed destination ("anything the tailnet
// routes"); its decisions name the rule "<empty allowlist>".
//
//	.internal.example.com              names strictly under internal.example.com
//	*.internal.example.com             the same; written back as .internal.example.com
//	grafana.internal.example.com       exactly this name
//	100.64.0.0/10                      IPv4 addresses in this prefix
//	100.101.102.103                    exactly this address (a /32)
//	fd7a:115c:a1e0::/48                IPv6 addresses in this prefix (a bare address is a /128)
//	.internal.example.com:443,8443     ports 443 and 8443 only
//	db.internal.example.com:5432-5439  a port range
//	100.64.0.0/10:22                   IPv4 prefix, port 22 only
//	[fd7a:115c:a1e0::/48]:22           IPv6 with ports needs brackets
//	!admin.internal.example.com        deny: never this name, whatever allows it
//	!.internal.example.com:22          deny port 22 under internal.example.com
//	!10.20.0.0/16                      deny these addresses, as literals and as
//	                                   what an allowed name resolves to
//
// Parse never guesses: an entry it cannot read in full is an error that
// names the entry by position, as in
//
//	dnsfilter: entry 3 "ex ample.com": name has a space
//
// Empty entries (",,", a trailing comma) are errors too.
//
// # Names
//
// A leading dot means "strictly under": .example.com matches a.example.com
// and a.b.example.com, but neither example.com itself nor evilexample.com.
// "*." is accepted as a synonym for the leading dot (note that x/net/proxy
// and NO_PROXY conventions also match the domain itself; we do not). Any
// other '*' is an error. An entry without a leading dot or "*." matches
// exactly that name. Rules are compared with the name after MagicDNS
// expansion (see [Expand]), so write fully qualified names.
//
// Names, in rules and in checked hosts, are compared in canonical form
// (see [Canonical]): lower case, one trailing dot removed (two trailing dots
// are malformed), non-ASCII names converted to punycode A-labels by IDNA
// (golang.org/x/net/idna Lookup profile, UTS #46 with STD3 rules). Raw
// Unicode is never compared: a homograph such as "grаfana" with a Cyrillic
// 'а' becomes an xn-- label and never equals the ASCII name. We are
// stricter than IDNA about what it would silently rewrite: a name that the
// IDNA mapping changes other than by case (fullwidth letters, the
// fullwidth and ideographic dots U+FF0E, U+3002 and U+FF61, invisible
// characters such as U+200B, unnormalized Unicode) is malformed, because
// the resolver that finally sees the raw string might not rewrite it the
// same way. [Decision.Host] is the canonical form that was checked; dial
// that.
//
// A name is malformed, and [List.Check] denies it whatever the list, if it
// has an empty label, a label over 63 bytes, more than 253 bytes, a label
// starting or ending with '-', an xn-- label that is not valid punycode, or
// any byte other than ASCII letters, digits, '-', '_' and '.' (NUL, control
// characters, spaces, '%', '/', '\', '@', ':' and so on) outside a valid
// IDN label. Underscores are allowed in ASCII labels because real DNS
// names use them (_sip._tcp); a name with non-ASCII characters follows the
// stricter IDNA rules, which forbid them.
//
// # IP addresses
//
// IP literals never match a name rule, only a prefix rule. [List.Check]
// recognises dotted-quad IPv4 and IPv6 (with or without brackets) and
// checks them against the prefix rules. IPv4-mapped IPv6 addresses
// (::ffff:127.0.0.1) are unmapped first, so IPv4 rules apply to them. An
// IPv6 zone (fe80::1%eth0) is malformed and denied.
//
// A name whose last label is numeric (all decimal digits, or 0x and hex
// digits) is denied as an ambiguous IP literal: this covers the legacy
// forms a libc resolver reads as IPv4 (0x7f.0.0.1, 0177.0.0.1, 2130706433,
// 127.1) as well as 127.0.0.1. with a trailing dot. They are not converted
// and checked as addresses because the resolver that finally dials might
// read them differently; the denial's reason gives the dotted-quad form to
// use instead. No top-level domain is numeric, so no real name is lost.
// Rules with a numeric last label are rejected by Parse for the same reason,
// as are prefixes with host bits set (10.1.0.0/8), IPv4-mapped prefixes,
// and zones.
//
// # Ports
//
// A rule without ports allows any port. Ports follow the rule after a
// colon: a port (443) or an inclusive range (8000-8099), 1 to 65535. Because
// the list is itself comma-separated, an entry that is only a port or a
// range continues the port list of the entry before it, which must have
// ports: ".a.com:443,8443,.b.com" is .a.com on 443 or 8443, and .b.com on
// any port. A port or range with no host:port entry before it is an error.
// IPv6 addresses and prefixes take ports only in brackets,
// [fd7a::/48]:22; unbracketed, the colons belong to the address. Ports are
// written back sorted, with overlapping and adjacent ranges merged.
//
// # Deny entries
//
// An entry that starts with "!" is a deny entry: any entry form above,
// ports included, after the "!". A deny entry that matches host and port
// denies, whatever allow entry also matches and wherever it stands in the
// list: ".corp.ts.net,!admin.corp.ts.net" allows every name under
// corp.ts.net except admin.corp.ts.net. A deny entry whose ports do not
// include the port has no effect. Deny entries for addresses apply to IP
// literals in [List.Check], and to the addresses a name resolves to in
// [List.CheckResolved]: the connector refuses a name when a deny entry
// matches any of its addresses. A list of deny entries alone allows everything else, like the empty
// list (its decisions name the rule "<empty allowlist>").
//
// A policy file ([ParsePolicy], [LoadPolicy]) holds the same rules with
// names and comments, and tests that the rules must pass.
//
// # Decisions
//
// A matching deny entry denies. Otherwise the first allow rule in list
// order that matches both host and port allows. If rules match the host
// but none the port, the first of them is named in the denial ("port 22 not
// in 443,8443"). Malformed names and ambiguous IP
// literals are denied by every list, the empty one included. Every
// [Decision] names the rule that decided, or none, and a short reason, for
// the audit log, and the canonical host it decided on; [Decision.Err] turns
// a denial into a [*DeniedError], which implements
// interface{ Denied() bool; RuleName() string; DenialReason() string } and
// matches [ErrDenied].
package dnsfilter
