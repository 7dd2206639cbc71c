package connector

import (
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// The addresses of an isolated namespace: the command's own (on the TUN
// device, with a default route through it), the DNS server's, and the
// range names are given addresses from. They are from 198.18.0.0/15
// (RFC 2544), which no tailnet and no LAN uses.
var (
	IsolatedAddr = netip.MustParsePrefix("198.18.0.2/15")
	IsolatedDNS  = netip.MustParseAddr("198.18.0.1")
	isolatedPool = netip.MustParsePrefix("198.19.0.0/16")
	// IPv6: a unique local prefix (RFC 4193) of tsconnect's; the names'
	// addresses are in its second /64, with the same index as their IPv4
	// ones.
	IsolatedAddr6  = netip.MustParsePrefix("fd74:7363::2/64")
	isolatedPool6  = netip.MustParsePrefix("fd74:7363:0:1::/64")
	isolatedTTL    = uint32(5)
	isolatedNIC    = tcpip.NICID(1)
	IsolatedDevice = "tsc0"
)

// IsolatedMTU is the TUN device's MTU: large, so that a bulk transfer
// costs few packets on both sides of it.
const IsolatedMTU = 65520

// IsolateOptions configure ServeTUN.
type IsolateOptions struct {
	// DeniedRcode is the DNS answer for a name the allowlist denies on
	// every port: dnsmessage.RCodeNameError (NXDOMAIN, the zero value's
	// meaning) so tools fail at once, or RCodeRefused.
	DeniedRcode dnsmessage.RCode

	// IPv6: the namespace has IsolatedAddr6 and an IPv6 default route
	// through the device, so AAAA queries are answered too (from
	// fd74:7363:0:1::/64); else they get no records.
	IPv6 bool
}
