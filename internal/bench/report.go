package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

type row struct {
	name string
	cell func(*Result) string
	// val, if set, gives the figure the ratio columns divide.
	val func(*Result) (float64, bool)
}

func (rep *Report) rows() []row {
	cfg := rep.Config
	mib := func(get func(*Result) int64) func(*Result) string {
		return func(r *Result) string {
			if v := get(r); v > 0 {
				return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20))
			}
			return "—"
		}
	}
	pct := func(q float64) (func(*Result) string, func(*Result) (float64, bool)) {
		val := func(r *Result) (float64, bool) {
			if len(r.Lat) == 0 {
				return 0, false
			}
			i := max(int(math.Ceil(q*float64(len(r.Lat))))-1, 0)
			return float64(r.Lat[i]) / float64(time.Millisecond), true
		}
		return func(r *Result) string {
			if v, ok := val(r); ok {
				return fmt.Sprintf("%.2f ms", v)
			}
			return "—"
		}, val
	}
	p50, p50v := pct(0.50)
	p99, p99v := pct(0.99)
	maxLat, _ := pct(1)
	tput := func(get func(*Result) []float64) (func(*Result) string, func(*Result) (float64, bool)) {
		val := func(r *Result) (float64, bool) {
			v := get(r)
			if len(v) == 0 {
				return 0, false
			}
			return median(v), true
		}
		return func(r *Result) string {
			v := get(r)
			if len(v) == 0 {
				return "—"
			}
			if len(v) == 1 {
				return fmt.Sprintf("%.0f", v[0])
			}
			return fmt.Sprintf("%.0f (%.0f–%.0f)", median(v), slices.Min(v), slices.Max(v))
		}, val
	}
	down, downv := tput(func(r *Result) []float64 { return r.Down })
	up, upv := tput(func(r *Result) []float64 { return r.Up })
	cpuPerGB := func(r *Result) string {
		if r.ProxyCPUDown == 0 && r.ProxyCPUUp == 0 {
			return "—"
		}
		per := func(cpu time.Duration, bytes int64) string {
			if bytes == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f", cpu.Seconds()/(float64(bytes)/1e9))
		}
		return per(r.ProxyCPUDown, r.DownBytes) + " / " + per(r.ProxyCPUUp, r.UpBytes)
	}
	return []row{
		{name: "start → first proxied byte", cell: func(r *Result) string { return durCell(r.StartToFirstByte) }},
		{name: fmt.Sprintf("bulk download, MB/s (median of %d × %s)", cfg.BulkReps, size(cfg.Bulk)), cell: down, val: downv},
		{name: fmt.Sprintf("bulk upload, MB/s (median of %d × %s)", cfg.BulkReps, size(cfg.Bulk)), cell: up, val: upv},
		{name: "proxy process CPU s per GB, down / up", cell: cpuPerGB},
		{name: fmt.Sprintf("new connection p50 (%d sequential)", cfg.Conns), cell: p50, val: p50v},
		{name: "new connection p99", cell: p99, val: p99v},
		{name: "new connection max", cell: maxLat},
		{name: fmt.Sprintf("stalls > %v (share of %d)", cfg.StallOver, cfg.Conns), cell: func(r *Result) string {
			if len(r.Lat)+r.ConnErrors == 0 {
				return "—"
			}
			n := len(r.Lat) + r.ConnErrors
			s := fmt.Sprintf("%d (%.2f%%)", r.Stalls, 100*float64(r.Stalls)/float64(n))
			if r.ConnErrors > 0 {
				s += fmt.Sprintf(", %d errors", r.ConnErrors)
			}
			return s
		}},
		{name: fmt.Sprintf("%d concurrent held %v: ok / errors", cfg.Concurrent, cfg.Hold), cell: func(r *Result) string {
			if r.ConcOK+r.ConcErrors == 0 {
				return "—"
			}
			return fmt.Sprintf("%d / %d", r.ConcOK, r.ConcErrors)
		}},
		{name: "RSS, peak while holding them", cell: mib(func(r *Result) int64 { return r.RSSConc })},
		{name: fmt.Sprintf("RSS idle (%v after first byte)", cfg.Settle), cell: mib(func(r *Result) int64 { return r.RSSIdle })},
		{name: "RSS right after the bulk transfers", cell: mib(func(r *Result) int64 { return r.RSSLoad })},
		{name: fmt.Sprintf("RSS after %v idle", cfg.IdleWait), cell: mib(func(r *Result) int64 { return r.RSSAfterIdle })},
		{name: "teardown: signal → gone from `headscale nodes list`", cell: func(r *Result) string {
			if r.Teardown > 0 {
				return durCell(r.Teardown)
			}
			if r.Exit == 0 {
				return "—"
			}
			return r.GoneNote
		}},
		{name: "teardown: signal → process exit (tsnet: Close returns)", cell: func(r *Result) string {
			if r.ExitNote != "" {
				return r.ExitNote
			}
			return durCell(r.Exit)
		}},
		{name: "tailnet path", cell: func(r *Result) string {
			if r.Path == "" {
				return "—"
			}
			return strings.SplitN(r.Path, " (", 2)[0]
		}},
	}
}

// Markdown renders the report: the table, the machine, the configuration,
// the commands and any errors.
func (rep *Report) Markdown(command string) string {
	var b strings.Builder
	cols := []struct{ key, title string }{
		{ColRaw, "raw loopback"}, {ColTSNet, "tsnet Dial (in-process)"},
		{ColTSConnectSOCKS5, "tsconnect SOCKS5"}, {ColTSConnectCONNECT, "tsconnect CONNECT"}, {ColTSConnectIsolate, "tsconnect --isolate=netns"},
		{ColTailscaledSOCKS5, "tailscaled SOCKS5"}, {ColTailscaledCONNECT, "tailscaled CONNECT"},
	}
	byCol := map[string]*Result{}
	for _, r := range rep.Results {
		byCol[r.Column] = r
	}
	b.WriteString("| metric |")
	for _, c := range cols {
		b.WriteString(" " + c.title + " |")
	}
	b.WriteString(" tsconnect / tailscaled (SOCKS5 / CONNECT) | tsconnect / raw (SOCKS5 / CONNECT) |\n|---|")
	for range len(cols) + 2 {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	empty := new(Result)
	for _, rw := range rep.rows() {
		b.WriteString("| " + rw.name + " |")
		for _, c := range cols {
			r := byCol[c.key]
			if r == nil {
				r = empty
			}
			b.WriteString(" " + rw.cell(r) + " |")
		}
		ratio := func(a, bb string) string {
			if rw.val == nil {
				return ""
			}
			var parts []string
			for i, num := range []string{ColTSConnectSOCKS5, ColTSConnectCONNECT} {
				den := []string{a, bb}[i]
				rn, rd := byCol[num], byCol[den]
				s := "—"
				if rn != nil && rd != nil {
					if x, ok := rw.val(rn); ok {
						if y, ok := rw.val(rd); ok && y != 0 {
							s = fmt.Sprintf("%.2f", x/y)
						}
					}
				}
				parts = append(parts, s)
			}
			return strings.Join(parts, " / ")
		}
		fmt.Fprintf(&b, " %s | %s |\n", ratio(ColTailscaledSOCKS5, ColTailscaledCONNECT), ratio(ColRaw, ColRaw))
	}
	if len(rep.Allow) > 0 {
		b.WriteString("| allowlist decision, 50 rules (dnsfilter BenchmarkCheck) |")
		for _, c := range cols {
			if strings.HasPrefix(c.key, "tsconnect") {
				a := rep.Allow[0]
				fmt.Fprintf(&b, " %.0f ns/op, %d allocs/op (%s) |", a.NsPerOp, a.AllocsOp, a.Case)
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("  |  |\n")
	}

	b.WriteString("\nRatios are tsconnect's figure divided by the other's: above 1 is faster for throughput, slower for latency. " +
		"MB/s is 10^6 bytes per second of payload, excluding connection set-up. Each proxy column is a process of its own, " +
		"started, measured and torn down in turn; the bench server is a tsnet node in the benchmark process, on the same " +
		"Headscale tailnet for every column; the benchmark's own client and server share the same CPUs.\n")

	if len(rep.Allow) > 0 {
		b.WriteString("\nAllowlist decision cost, `go test -run '^$' -bench '^BenchmarkCheck$' -benchmem ./dnsfilter` (50-rule list):\n\n| case | ns/op | B/op | allocs/op |\n|---|---|---|---|\n")
		for _, a := range rep.Allow {
			fmt.Fprintf(&b, "| %s | %.1f | %d | %d |\n", a.Case, a.NsPerOp, a.BPerOp, a.AllocsOp)
		}
	}

	m := rep.Machine
	fmt.Fprintf(&b, "\nMachine: %d CPUs (%s), %s memory, %s, %s, tailscale.com %s (tsnet and tailscaled). "+
		"Load average (1/5/15 min) %s at start, %s at end. Run took %v.\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.Tailscale, m.LoadBefore, rep.LoadAfter, rep.End.Sub(rep.Start).Round(time.Second))
	fmt.Fprintf(&b, "\nCommand: `%s`\n", command)
	if rep.TSConnectPkg != "" {
		fmt.Fprintf(&b, "\ntsconnect columns ran `%s`.", rep.TSConnectPkg)
		if rep.TSConnectPkg == pkgStandin {
			b.WriteString(" (the stand-in: cmd/tsconnect was missing or did not build; it runs the same connector.Start with a proxy)")
		}
		b.WriteString("\n")
	}
	b.WriteString("\nProcesses started:\n\n")
	for _, r := range rep.Results {
		for _, c := range r.Commands {
			fmt.Fprintf(&b, "- %s: `%s`\n", r.Column, c)
		}
		if r.Path != "" {
			fmt.Fprintf(&b, "- %s: tailnet path %s\n", r.Column, r.Path)
		}
	}
	if len(rep.Profiles) > 0 {
		b.WriteString("\nProfiles:\n\n")
		for _, p := range rep.Profiles {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	var errs []string
	for _, r := range rep.Results {
		for _, err := range r.Errs {
			errs = append(errs, fmt.Sprintf("- %s: %v", r.Column, err))
		}
	}
	if len(errs) > 0 {
		b.WriteString("\nErrors:\n\n" + strings.Join(errs, "\n") + "\n")
	}
	return b.String()
}

func durCell(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d B", n)
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
