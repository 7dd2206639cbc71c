package dnsfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testPolicy = `// a comment
{
	"tailnet": "corp.ts.net.",
	"rules": [
		{"name": "web", "allow": ".corp.ts.net:443", "comment": "c"},
		{"name": "no-admin", "deny": ["admin.corp.ts.net", "nas.corp.ts.net:9443"]},
		{"allow": "db.corp.ts.net:5432,5433"},
		{"name": "no-prod", "deny": "10.20.0.0/16"},
	],
	"tests": [
		{"dst": "grafana:443", "expect": "allow", "rule": "web"},
		{"dst": "admin:443", "expect": "deny", "rule": "no-admin"},
		{"dst": "nas.corp.ts.net:9443", "expect": "deny", "rule": "!nas.corp.ts.net:9443"},
		{"dst": "db:5433", "expect": "allow", "rule": "db.corp.ts.net:5432-5433"},
		{"dst": "db:5432", "addr": "10.20.1.1", "expect": "deny", "rule": "no-prod"},
		{"dst": "10.20.1.1:443", "expect": "deny", "rule": "no-prod"},
	], // trailing commas are HuJSON
}
`

func TestPolicy(t *testing.T) {
	p, err := ParsePolicy("p.hujson", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if fails := p.Test(); len(fails) != 0 {
		t.Fatalf("Test() = %v, want no failures", fails)
	}
	if p.Tailnet != "corp.ts.net" || len(p.Tests) != 6 || p.Tests[1].Line != 12 {
		t.Errorf("Tailnet %q, %d tests, test 2 on line %d; want corp.ts.net, 6, 12", p.Tailnet, len(p.Tests), p.Tests[1].Line)
	}
	want := ".corp.ts.net:443,!admin.corp.ts.net,!nas.corp.ts.net:9443,db.corp.ts.net:5432-5433,!10.20.0.0/16"
	if got := p.List.String(); got != want {
		t.Errorf("List = %q, want %q", got, want)
	}
	rules := p.List.Rules()
	if len(rules) != 5 || rules[1] != (Rule{Text: "!admin.corp.ts.net", Name: "no-admin", Deny: true}) || rules[3].Name != "" {
		t.Errorf("Rules() = %+v", rules)
	}
	d := p.Decide("admin", 443, netip.Addr{})
	if d.Allow || d.Name != "no-admin" || p.RuleLine(d) != 6 {
		t.Errorf("Decide(admin) = %+v on line %d, want a denial by no-admin on line 6", d, p.RuleLine(d))
	}
	err = d.Err("admin", 443)
	if want := `dnsfilter: "admin:443" not allowed: matches !admin.corp.ts.net (rule "no-admin")`; err.Error() != want {
		t.Errorf("Err = %q, want %q", err, want)
	}
	if d := p.Decide("grafana", 443, netip.MustParseAddr("10.20.0.9")); d.Allow || d.Rule != "!10.20.0.0/16" || d.Host != "grafana.corp.ts.net" || d.Reason != "address 10.20.0.9 matches !10.20.0.0/16" {
		t.Errorf("Decide(grafana via 10.20.0.9) = %+v, want the address denied", d)
	}
}

// TestPolicyFailures: a test that expects the wrong verdict, or the wrong
// rule, fails and says what decided; LoadPolicy refuses the file.
func TestPolicyFailures(t *testing.T) {
	src := strings.Replace(testPolicy, `{"dst": "admin:443", "expect": "deny", "rule": "no-admin"}`,
		`{"dst": "admin:443", "expect": "allow", "name": "admin open"}`, 1)
	src = strings.Replace(src, `"expect": "allow", "rule": "web"`, `"expect": "allow", "rule": "no-admin"`, 1)
	path := filepath.Join(t.TempDir(), "p.hujson")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	fails := p.Test()
	if len(fails) != 2 {
		t.Fatalf("Test() = %v, want 2 failures", fails)
	}
	for i, want := range []string{
		`grafana:443: want allow by rule "no-admin", got allow: matches .corp.ts.net:443 (rule "web")`,
		`test "admin open", admin:443: want allow, got deny: matches !admin.corp.ts.net (rule "no-admin")`,
	} {
		if got := fails[i].Error(); got != want {
			t.Errorf("failure %d = %q, want %q", i, got, want)
		}
	}
	_, err = LoadPolicy(path)
	var pe *PolicyError
	if !errors.As(err, &pe) || len(pe.Failures) != 2 || pe.Tests != 6 {
		t.Fatalf("LoadPolicy = %v, want a *PolicyError with 2 failures", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, path+": 2 of 6 tests fail:\n  "+path+":11: grafana:443: want") {
		t.Errorf("LoadPolicy error = %q", msg)
	}
	if _, err := LoadPolicy(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadPolicy(missing) = %v, want ErrNotExist", err)
	}
}

// policyErrorTests are files ParsePolicy rejects, with the line and a
// substring of the message.
var policyErrorTests = []struct {
	src  string
	line int
	want string
}{
	{`{"rules": [`, 1, "f.hujson:1: column 12: parsing value: unexpected EOF"},
	{"{\n\"rules\": [{\"allow\": \".a.com\"}],\n\"tests\": 3}", 3, "want []dnsfilter.PolicyTest"},
	{"{\n\"rulez\": []}", 2, `unknown field "rulez"`},
	{"{\"rules\": [\n{\"allow\": \".a.com\"},\n{\"name\": \"x\"}]}", 3, `rule 2 "x": has neither "allow" nor "deny"`},
	{`{"rules": [{"allow": ".a.com", "deny": "b.a.com"}]}`, 1, `has both "allow" and "deny"`},
	{`{"rules": [{"allow": "!b.a.com"}]}`, 1, `rule 1: "!b.a.com": a deny entry in an allow rule: write it as a rule of its own, "deny": "b.a.com"`},
	{`{"rules": [{"deny": "!b.a.com"}]}`, 1, `no '!' in a deny rule`},
	{`{"rules": [{"allow": "a b.com"}]}`, 1, `rule 1: "a b.com": name has a space`},
	{"{\"rules\": [\n{\"deny\": \"b.a.com\", \"opaque\": true}]}", 2, `rule 1: "opaque" is for allow rules`},
	{`{"rules": [{"allow": ""}]}`, 1, `rule 1: empty entry`},
	{`{"rules": [{"allow": 7}]}`, 1, `want a string or an array of strings`},
	{"{\"rules\": [{\"name\": \"a\", \"allow\": \".a.com\"},\n{\"name\": \"a\", \"allow\": \".b.com\"}]}", 2, `rule 2 "a": the name is also rule 1's`},
	{`{"tailnet": "corp", "rules": []}`, 1, `tailnet "corp": want a MagicDNS suffix`},
	{`{"rules": [{"allow": ".a.com"}], "tests": [{"dst": "x.a.com:443", "expect": "yes"}]}`, 1, `test 1: "expect": "yes": want "allow" or "deny"`},
	{`{"rules": [{"allow": ".a.com"}], "tests": [{"dst": "x.a.com", "expect": "allow"}]}`, 1, `"dst": "x.a.com": want host:port`},
	{`{"rules": [{"allow": ".a.com"}], "tests": [{"dst": "x.a.com:0", "expect": "allow"}]}`, 1, `port "0" is not 1 to 65535`},
	{`{"rules": [{"allow": ".a.com"}], "tests": [{"dst": "grafana:443", "expect": "allow"}]}`, 1, `a short name needs the file's "tailnet"`},
	{`{"rules": [{"allow": ".a.com"}], "tests": [{"dst": "x.a.com:1", "addr": "x", "expect": "allow"}]}`, 1, `"addr": "x": not an IP address`},
	{`{"rules": [{"allow": ".a.com"}], "tests": [{"dst": "x.a.com:1", "rule": "nope", "expect": "allow"}]}`, 1, `"rule": "nope": no rule has this name or text`},
	{`{"rules": [], "tests": [{"dst": "x:1", "expect": "allow", "src": "y"}]}`, 1, `unknown field "src"`},
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tt := range policyErrorTests {
		_, err := ParsePolicy("f.hujson", []byte(tt.src))
		var pe *PolicyError
		if !errors.As(err, &pe) || pe.File != "f.hujson" || pe.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePolicy(%q) = %v (line %d), want line %d and %q", tt.src, err, lineOf(pe), tt.line, tt.want)
		}
	}
}

// TestPolicyOpaque: an allow rule's "opaque" reaches the decisions it
// makes and List.Rules; other rules' decisions are not opaque.
func TestPolicyOpaque(t *testing.T) {
	p, err := ParsePolicy("f.hujson", []byte(`{"rules": [
		{"name": "pg", "allow": ["db.a.com:5432", "10.0.0.0/8:5432"], "opaque": true},
		{"name": "web", "allow": ".a.com:443"},
		{"deny": "admin.a.com"},
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host   string
		port   uint16
		allow  bool
		opaque bool
	}{
		{"db.a.com", 5432, true, true},
		{"10.1.2.3", 5432, true, true},
		{"db.a.com", 443, true, false},
		{"admin.a.com", 443, false, false},
	} {
		d := p.List.Check(tt.host, tt.port)
		if d.Allow != tt.allow || d.Opaque != tt.opaque {
			t.Errorf("Check(%s:%d) = allow %v opaque %v (%s), want %v %v", tt.host, tt.port, d.Allow, d.Opaque, d.Reason, tt.allow, tt.opaque)
		}
	}
	var got []bool
	for _, r := range p.List.Rules() {
		got = append(got, r.Opaque)
	}
	if fmt.Sprint(got) != "[true true false false]" {
		t.Errorf("Rules() opaque = %v, want [true true false false]", got)
	}
}

func lineOf(pe *PolicyError) int {
	if pe == nil {
		return -1
	}
	return pe.Line
}

// TestExamplePolicy: the example in examples/policy parses and passes
// its own tests, at least ten of which are deny tests.
func TestExamplePolicy(t *testing.T) {
	p, err := LoadPolicy("../examples/policy/agent.hujson")
	if err != nil {
		t.Fatal(err)
	}
	deny := 0
	for _, tt := range p.Tests {
		if tt.Expect == "deny" {
			deny++
		}
	}
	if deny < 10 {
		t.Errorf("the example has %d deny tests, want at least 10", deny)
	}
}
