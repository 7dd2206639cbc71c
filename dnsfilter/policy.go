package dnsfilter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"
)

// A Policy is a policy file: an allowlist whose rules may have names and
// comments, and the tests it must pass. The file is HuJSON (JSON with
// comments and trailing commas, as Tailscale's policy file):
//
//	{
//	  // Short names in the tests expand with this MagicDNS suffix.
//	  "tailnet": "corp.ts.net",
//	  "rules": [
//	    {"name": "web", "allow": ".corp.ts.net:443"},
//	    {"name": "no-admin", "deny": "admin.corp.ts.net", "comment": "break-glass only"},
//	    {"name": "db", "allow": ["db.corp.ts.net:5432", "100.64.0.0/10:5432"]},
//	  ],
//	  "tests": [
//	    {"dst": "admin.corp.ts.net:443", "expect": "deny", "rule": "no-admin"},
//	    {"dst": "grafana:443", "expect": "allow", "rule": "web"},
//	    {"dst": "db.corp.ts.net:5432", "addr": "10.20.0.7", "expect": "deny"},
//	  ],
//	}
//
// A rule has a "name" (optional, unique), an optional "comment", and one
// of "allow" and "deny": an entry in the list syntax of [Parse] without
// the "!" (ports continue after commas, as in "a.com:443,8443"), or an
// array of them. Every entry of a deny rule is a deny entry. An allow
// rule may be marked "opaque": true, and the tunnels it allows are then
// spliced without the connector's check of the TLS SNI or HTTP Host inside
// them (for a target whose clients send a name it does not route on). The rules
// form one [List] in file order, so a policy allows exactly what the
// one-line list of its entries allows.
//
// A test has a "dst" (host:port, as a client would ask; a short name is
// expanded with "tailnet"), an "expect" ("allow" or "deny"), optionally
// the "rule" that must decide (its name or its canonical text), an "addr"
// the name resolves to (so deny rules for addresses are tested too), and
// a "name" or "comment" for people.
type Policy struct {
	List    *List
	Tailnet string // the MagicDNS suffix the tests assume, "" if none
	Tests   []PolicyTest

	file  string
	lines []int // the line of each of List's rules in the file
}

// A PolicyTest is one test of a [Policy].
type PolicyTest struct {
	Name    string `json:"name,omitempty"`
	Dst     string `json:"dst"`
	Addr    string `json:"addr,omitempty"`
	Expect  string `json:"expect"`
	Rule    string `json:"rule,omitempty"`
	Comment string `json:"comment,omitempty"`
	Line    int    `json:"-"` // where it is in the file

	host string
	port uint16
	addr netip.Addr
}

// A TestFailure is a test whose decision differs from what it expects.
type TestFailure struct {
	Test     *PolicyTest
	Decision Decision // what the policy decided
}

// Error says where the test is, what it expected and what decided.
func (f TestFailure) Error() string {
	t, d := f.Test, f.Decision
	want := t.Expect
	if t.Rule != "" {
		want += " by rule " + strconv.Quote(t.Rule)
	}
	msg := fmt.Sprintf("%s: want %s, got %s", t.Dst, want, d)
	if t.Name != "" {
		msg = "test " + strconv.Quote(t.Name) + ", " + msg
	}
	if d.Name != "" {
		msg += " (rule " + strconv.Quote(d.Name) + ")"
	}
	return msg
}

// PolicyError is the error for a policy file that cannot be used: it does
// not parse, or (from [LoadPolicy]) its tests fail.
type PolicyError struct {
	File     string
	Line     int           // 0 if the error is not at one place
	Err      error         // what is wrong, when the file does not parse
	Failures []TestFailure // the failing tests, when it parses
	Tests    int           // how many tests it has
}

func (e *PolicyError) Error() string {
	if e.Failures == nil {
		if e.Line > 0 {
			return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
		}
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d of %d tests fail:", e.File, len(e.Failures), e.Tests)
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "\n  %s:%d: %v", e.File, f.Test.Line, f)
	}
	return b.String()
}

func (e *PolicyError) Unwrap() error { return e.Err }

// LoadPolicy reads and parses the policy file at path and runs its tests:
// what a program does before it serves with the policy. A file that does
// not parse, or whose tests fail, is a [*PolicyError].
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := ParsePolicy(path, data)
	if err != nil {
		return nil, err
	}
	if fails := p.Test(); len(fails) > 0 {
		return nil, &PolicyError{File: path, Failures: fails, Tests: len(p.Tests)}
	}
	return p, nil
}

// policyFile is the file's JSON form.
type policyFile struct {
	Tailnet string       `json:"tailnet"`
	Rules   []policyRule `json:"rules"`
	Tests   []PolicyTest `json:"tests"`
}

type policyRule struct {
	Name    string  `json:"name"`
	Comment string  `json:"comment"`
	Allow   entries `json:"allow"`
	Deny    entries `json:"deny"`
	Opaque  bool    `json:"opaque"`
}

// entries is one list-syntax string or an array of them.
type entries []string

func (e *entries) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*e = entries{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want a string or an array of strings")
	}
	*e = many
	return nil
}

// ParsePolicy parses a policy file's contents; file names it in errors.
// It checks every rule and test but runs no test (see [Policy.Test]).
// Errors are [*PolicyError]s that give the line.
func ParsePolicy(file string, data []byte) (*Policy, error) {
	fail := func(line int, format string, args ...any) error {
		return &PolicyError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
	}
	ast, err := hujson.Parse(data)
	if err != nil {
		var line, col int
		msg := err.Error()
		if _, serr := fmt.Sscanf(msg, "hujson: line %d, column %d:", &line, &col); serr == nil {
			_, msg, _ = strings.Cut(msg, fmt.Sprintf("column %d: ", col))
			msg = fmt.Sprintf("column %d: %s", col, msg)
		}
		return nil, fail(line, "%s", msg)
	}
	ast.Standardize() // offsets, and so lines, are kept
	std := ast.Pack()
	var pf policyFile
	dec := json.NewDecoder(bytes.NewReader(std))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pf); err != nil {
		line := lineAt(std, dec.InputOffset())
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line = lineAt(std, se.Offset)
		case errors.As(err, &te):
			line = lineAt(std, te.Offset)
			err = fmt.Errorf("%s: want %s", te.Field, te.Type)
		}
		return nil, fail(line, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	lineOf := func(ptr string) int {
		if v := ast.Find(ptr); v != nil {
			return lineAt(std, int64(v.StartOffset))
		}
		return 0
	}
	p := &Policy{List: new(List), Tailnet: strings.Trim(pf.Tailnet, "."), file: file}
	if p.Tailnet != "" {
		if _, err := Canonical(p.Tailnet); err != nil || !strings.Contains(p.Tailnet, ".") {
			return nil, fail(lineOf("/tailnet"), "tailnet %q: want a MagicDNS suffix such as corp.ts.net", pf.Tailnet)
		}
	}
	names := map[string]int{}
	for i, r := range pf.Rules {
		line := lineOf(fmt.Sprintf("/rules/%d", i))
		what := fmt.Sprintf("rule %d", i+1)
		if r.Name != "" {
			what += " " + strconv.Quote(r.Name)
			if prev, dup := names[r.Name]; dup {
				return nil, fail(line, "%s: the name is also rule %d's", what, prev)
			}
			names[r.Name] = i + 1
		}
		specs, mode := r.Allow, allowEntries
		switch {
		case len(r.Allow) > 0 && len(r.Deny) > 0:
			return nil, fail(line, `%s: has both "allow" and "deny": one verdict per rule`, what)
		case len(r.Deny) > 0:
			specs, mode = r.Deny, denyEntries
		case len(r.Allow) == 0:
			return nil, fail(line, `%s: has neither "allow" nor "deny"`, what)
		}
		if r.Opaque && mode == denyEntries {
			return nil, fail(line, `%s: "opaque" is for allow rules (it turns off the SNI and Host checks inside the tunnels they allow)`, what)
		}
		for _, spec := range specs {
			n := len(p.List.rules)
			if strings.TrimSpace(spec) == "" {
				return nil, fail(line, "%s: empty entry", what)
			}
			if err := p.List.add(spec, r.Name, mode); err != nil {
				pe := err.(*ParseError)
				return nil, fail(line, "%s: %q: %s", what, pe.Text, pe.Reason)
			}
			for j := n; j < len(p.List.rules); j++ {
				p.List.rules[j].opaque = r.Opaque
				p.lines = append(p.lines, line)
			}
		}
	}
	p.List.index()
	for i := range pf.Tests {
		t := &pf.Tests[i]
		t.Line = lineOf(fmt.Sprintf("/tests/%d", i))
		if err := p.prepare(t); err != nil {
			return nil, fail(t.Line, "test %d: %v", i+1, err)
		}
	}
	p.Tests = pf.Tests
	return p, nil
}

// prepare checks a test and fills in its parsed destination.
func (p *Policy) prepare(t *PolicyTest) error {
	if t.Expect != "allow" && t.Expect != "deny" {
		return fmt.Errorf(`"expect": %q: want "allow" or "deny"`, t.Expect)
	}
	host, ps, err := net.SplitHostPort(t.Dst)
	if err != nil || host == "" {
		return fmt.Errorf(`"dst": %q: want host:port, e.g. "db.corp.ts.net:5432"`, t.Dst)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf(`"dst": %q: port %q is not 1 to 65535`, t.Dst, ps)
	}
	t.host, t.port = host, uint16(port)
	if Expand(host, "x.invalid") != host && p.Tailnet == "" {
		return fmt.Errorf(`"dst": %q: a short name needs the file's "tailnet" (e.g. "tailnet": "corp.ts.net") to expand it`, t.Dst)
	}
	if t.Addr != "" {
		if t.addr, err = netip.ParseAddr(t.Addr); err != nil {
			return fmt.Errorf(`"addr": %q: not an IP address`, t.Addr)
		}
	}
	if t.Rule != "" && !p.hasRule(t.Rule) {
		return fmt.Errorf(`"rule": %q: no rule has this name or text`, t.Rule)
	}
	return nil
}

func (p *Policy) hasRule(s string) bool {
	for i := range p.List.rules {
		if r := &p.List.rules[i]; r.label == s || r.text == s {
			return true
		}
	}
	return false
}

// Decide is the policy's decision on host (a short name is expanded with
// the file's tailnet) and port, and, if addr is valid, on the connection
// to that address the name resolved to: what a test checks.
func (p *Policy) Decide(host string, port uint16, addr netip.Addr) Decision {
	d := p.List.Check(Expand(host, p.Tailnet), port)
	if d.Allow && addr.IsValid() {
		if _, err := netip.ParseAddr(d.Host); err != nil { // a name: its address is checked too
			if dr := p.List.CheckResolved(addr, port); !dr.Allow {
				dr.Host = d.Host // the name; the reason gives the address
				return dr
			}
		}
	}
	return d
}

// Test runs every test and returns those that fail, in file order.
func (p *Policy) Test() []TestFailure {
	var fails []TestFailure
	for i := range p.Tests {
		t := &p.Tests[i]
		d := p.Decide(t.host, t.port, t.addr)
		ok := d.Allow == (t.Expect == "allow")
		if t.Rule != "" && d.Rule != t.Rule && d.Name != t.Rule {
			ok = false
		}
		if !ok {
			fails = append(fails, TestFailure{Test: t, Decision: d})
		}
	}
	return fails
}

// RuleLine returns the line of the file where the rule Decision.Rule
// names is, or 0.
func (p *Policy) RuleLine(d Decision) int {
	for i := range p.List.rules {
		if p.List.rules[i].text == d.Rule && i < len(p.lines) {
			return p.lines[i]
		}
	}
	return 0
}

// File returns the policy's file name, as given to ParsePolicy.
func (p *Policy) File() string { return p.file }

func lineAt(b []byte, off int64) int {
	if off < 0 || off > int64(len(b)) {
		return 0
	}
	return 1 + bytes.Count(b[:off], []byte("\n"))
}
