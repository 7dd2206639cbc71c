package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/tsconnect/tsconnect/dnsfilter"
)

const policyUsage = `Usage:
  tsconnect policy test FILE...
  tsconnect policy explain [--addr IP] FILE TARGET...

A policy file is the allowlist with names, comments, deny rules and tests
of its own, in HuJSON (JSON with comments and trailing commas, as
Tailscale's policy file). 'run', 'up', 'check' and 'demo' take it with
--policy FILE and refuse to start (exit 2, before joining) if its tests fail.

  {
    "tailnet": "corp.ts.net",   // short names in tests expand with it
    "rules": [
      {"name": "web", "allow": ".corp.ts.net:443"},
      {"name": "no-admin", "deny": ["admin.corp.ts.net", "10.20.0.0/16"]},
    ],
    "tests": [
      {"dst": "admin:443", "expect": "deny", "rule": "no-admin"},
      {"dst": "grafana:443", "expect": "allow"},
      {"dst": "db.corp.ts.net:443", "addr": "10.20.0.7", "expect": "deny"},
    ],
  }

A rule has one of "allow" and "deny": an entry as --allow takes it, or an
array of them. Deny rules win over allow rules wherever they stand; a deny
rule for addresses also refuses names that resolve there ("addr" in a test).
A test's "rule" is a rule's name or its canonical text.

test     evaluates every test of each FILE offline (no tailnet, no key) and
         prints each failing test with the rule that decided. Exit 0 when
         all pass, 1 when any fails, 2 when a file cannot be used.
explain  prints the decision and the rule for each TARGET (host:port, or a
         URL, as 'check' takes them). Exit 0 when all are allowed, 5 when
         any is denied.

Examples:
  tsconnect policy test examples/policy/agent.hujson
  tsconnect policy explain examples/policy/agent.hujson admin.mcp.corp.ts.net:443 https://grafana/
  tsconnect policy explain --addr 100.64.10.7 agent.hujson agent-db:5432
`

func cmdPolicy(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("policy", policyUsage)
	var addr string
	fs.StringVar(&addr, "addr", "", "explain: the `IP` the targets' names resolve to, so deny rules for\naddresses apply")
	fs.section("Flags")
	verb := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:] // flags follow the verb
	}
	if code, done := fs.parse(args, sio); done {
		return code
	}
	rest := fs.Args()
	switch verb {
	case "":
		return sio.fail(usageErrorf("policy", "want 'test FILE…' or 'explain FILE TARGET…'"))
	case "test":
		if len(rest) == 0 {
			return sio.fail(usageErrorf("policy", "policy test: name the policy FILE"))
		}
		if addr != "" {
			return sio.fail(usageErrorf("policy", "--addr is for explain: tests give their own \"addr\""))
		}
		return policyTest(rest, sio)
	case "explain":
		if len(rest) < 2 {
			return sio.fail(usageErrorf("policy", "policy explain: want FILE and at least one TARGET (host:port or a URL)"))
		}
		var ip netip.Addr
		if addr != "" {
			var err error
			if ip, err = netip.ParseAddr(addr); err != nil {
				return sio.fail(usageErrorf("policy", "--addr %q: not an IP address", addr))
			}
		}
		return policyExplain(rest[0], rest[1:], ip, sio)
	default:
		return sio.fail(usageErrorf("policy", "unknown policy command %q: want test or explain", verb))
	}
}

// readPolicy reads and parses a policy file without running its tests.
func readPolicy(file string) (*dnsfilter.Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err, hint: "name a policy file; see 'tsconnect help policy'"}
	}
	p, err := dnsfilter.ParsePolicy(file, data)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err, hint: "see 'tsconnect help policy' for the file's format"}
	}
	return p, nil
}

func policyTest(files []string, sio stdio) int {
	code := exitOK
	for _, file := range files {
		p, err := readPolicy(file)
		if err != nil {
			sio.fail(err)
			code = exitUsage
			continue
		}
		fails := p.Test()
		for _, f := range fails {
			fmt.Fprintf(sio.Out, "FAIL %s:%d: %v%s\n", file, f.Test.Line, f, ruleLine(p, f.Decision))
		}
		deny := 0
		for _, t := range p.Tests {
			if t.Expect == "deny" {
				deny++
			}
		}
		if len(fails) > 0 {
			fmt.Fprintf(sio.Out, "FAIL %s: %d of %d tests fail\n", file, len(fails), len(p.Tests))
			code = max(code, exitFailure)
			continue
		}
		fmt.Fprintf(sio.Out, "ok   %s: %d tests pass (%d deny, %d allow), %d rules\n", file, len(p.Tests), deny, len(p.Tests)-deny, len(p.List.Rules()))
		if len(p.Tests) == 0 {
			sio.logf("warning: %s has no tests: add some to \"tests\", deny tests first", file)
		}
	}
	return code
}

func policyExplain(file string, targets []string, addr netip.Addr, sio stdio) int {
	p, err := readPolicy(file)
	if err != nil {
		return sio.fail(err)
	}
	var rs []checkResult
	for _, t := range targets {
		r, err := parseTarget(t)
		if err != nil {
			return sio.fail(usageErrorf("policy", "%s: %v", t, err))
		}
		rs = append(rs, r)
	}
	code := exitOK
	for _, r := range rs {
		t := r.Target
		d := p.Decide(r.Host, r.Port, addr)
		checked := ""
		if d.Host != "" && d.Host != r.Host {
			checked = " (checked as " + d.Host + ")"
		}
		name := ""
		if d.Name != "" {
			name = " (rule " + strconv.Quote(d.Name) + ")"
		}
		fmt.Fprintf(sio.Out, "%s%s: %s%s%s\n", t, checked, d, name, ruleLine(p, d))
		if !d.Allow {
			code = exitCheckFailed
		}
	}
	return code
}

// ruleLine gives the line of the rule that decided, as " [line 14]", or
// "".
func ruleLine(p *dnsfilter.Policy, d dnsfilter.Decision) string {
	if line := p.RuleLine(d); line > 0 {
		return fmt.Sprintf(" [line %d]", line)
	}
	return ""
}
