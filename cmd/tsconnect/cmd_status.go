package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const statusUsage = `Usage: tsconnect status [--json] [--control-socket PATH]

Show what a running 'tsconnect up' is doing: the node's name, tailnet
addresses and tags, the control plane, the proxy address and allowlist, and
connection counters for the proxy and each forward.

Examples:
  tsconnect status
  tsconnect status --json | jq -r .ipv4
  tsconnect status --control-socket /run/tsconnect/agent.sock
`

func cmdStatus(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("status", statusUsage)
	var asJSON bool
	var sockPath string
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.StringVar(&sockPath, "control-socket", defaultControlSocket(), "the control socket `path` of the tsconnect up to ask")
	fs.section("Flags")
	if code, done := fs.parse(args, sio); done {
		return code
	}
	if fs.NArg() > 0 {
		return sio.fail(usageErrorf("status", "unexpected argument %q", fs.Arg(0)))
	}
	st, raw, err := fetchStatus(ctx, sockPath)
	if err != nil {
		return sio.fail(err)
	}
	if asJSON {
		sio.Out.Write(raw)
		return exitOK
	}
	printStatus(sio.Out, st)
	return exitOK
}

func fetchStatus(ctx context.Context, path string) (upStatus, []byte, error) {
	var st upStatus
	hc := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://tsconnect/v1/status", nil)
	if err != nil {
		return st, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return st, nil, &exitError{code: exitFailure,
				err:  fmt.Errorf("no tsconnect up is running at %s", path),
				hint: "start one with `tsconnect up`, or pass its --control-socket"}
		}
		return st, nil, fmt.Errorf("asking tsconnect up at %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, nil, fmt.Errorf("asking tsconnect up at %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("tsconnect up at %s: %s: %s", path, resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("tsconnect up at %s: bad answer: %w", path, err)
	}
	return st, raw, nil
}

func printStatus(w io.Writer, st upStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("node", "%s (%s)", st.Name, st.FQDN)
	row("addresses", "%s", addrString(st.IPv4, st.IPv6))
	tags := strings.Join(st.Tags, ", ")
	if tags == "" {
		tags = "none"
	}
	row("tags", "%s", tags)
	row("control", "%s", st.ControlURL)
	row("state", "%s, ephemeral, peers: %d", st.State, st.Peers)
	row("key from", "%s", st.KeySource)
	allow := st.Allowlist
	if allow == "" {
		allow = "none: anything the tailnet ACL allows"
	}
	if st.Policy != "" {
		allow = st.Policy + ": " + allow
	}
	row("allowlist", "%s", allow)
	for _, r := range st.Rules {
		name, hits := "", fmt.Sprintf("%d hits", r.Hits)
		if r.Name != "" {
			name = " " + strconv.Quote(r.Name)
		}
		switch r.Hits {
		case 0:
			hits = "never used"
		case 1:
			hits = "1 hit"
		}
		row("rule", "%s%s: %s", r.Rule, name, hits)
	}
	p := st.ProxyStats
	row("proxy", "%s: %d accepted, %d active, %d allowed, %d denied, %d failed; %d B up, %d B down",
		st.Proxy, p.Accepted, p.Active, p.Allowed, p.Denied, p.Failed, p.BytesUp, p.BytesDown)
	for _, f := range st.Forwards {
		row("forward", "%s -> %s: %d accepted, %d active, %d failed; %d B up, %d B down",
			f.Local, f.Remote, f.Accepted, f.Active, f.Failed, f.BytesUp, f.BytesDown)
	}
	row("pid", "%d, up since %s, tsconnect %s", st.PID, st.Since.Local().Format(time.DateTime), st.Version)
	tw.Flush()
}
