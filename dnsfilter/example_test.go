package dnsfilter_test

import (
	"fmt"

	"github.com/tsconnect/tsconnect/dnsfilter"
)

func ExampleList_Check() {
	allow, err := dnsfilter.Parse(".internal.example.com:443,8443, 100.64.0.0/10:22")
	if err != nil {
		panic(err)
	}
	for _, dest := range []struct {
		host string
		port uint16
	}{
		{dnsfilter.Expand("grafana", "internal.example.com."), 443},
		{"grafana.internal.example.com", 22},
		{"internal.example.com", 443},
		{"evil.example.com", 443},
		{"grаfana.internal.example.com", 443}, // Cyrillic 'а': an xn-- label, still under the domain
		{"100.100.1.1", 22},
		{"100.100.1.1", 443},
		{"0x64.0x64.1.1", 22},
	} {
		d := allow.Check(dest.host, dest.port)
		fmt.Printf("%s:%d %v\n", d.Host, dest.port, d)
	}
	fmt.Println(allow.Check("evil.example.com", 443).Err("evil.example.com", 443))
	// Output:
	// grafana.internal.example.com:443 allow: matches .internal.example.com:443,8443
	// grafana.internal.example.com:22 deny: port 22 not in 443,8443 (rule .internal.example.com:443,8443)
	// internal.example.com:443 deny: no rule matches
	// evil.example.com:443 deny: no rule matches
	// xn--grfana-4nf.internal.example.com:443 allow: matches .internal.example.com:443,8443
	// 100.100.1.1:22 allow: matches 100.64.0.0/10:22
	// 100.100.1.1:443 deny: port 443 not in 22 (rule 100.64.0.0/10:22)
	// :22 deny: ambiguous IP literal: write it as 100.100.1.1
	// dnsfilter: "evil.example.com:443" not allowed: no rule matches (allowlist .internal.example.com:443,8443,100.64.0.0/10:22)
}

func ExampleParse() {
	l, err := dnsfilter.Parse("*.Internal.Example.com:8443,443, db.example.com, [fd7a:115c:a1e0::/48]:22")
	fmt.Println(l, err)
	_, err = dnsfilter.Parse(".internal.example.com,ex ample.com")
	fmt.Println(err)
	// Output:
	// .internal.example.com:443,8443,db.example.com,[fd7a:115c:a1e0::/48]:22 <nil>
	// dnsfilter: entry 2 "ex ample.com": name has a space
}
