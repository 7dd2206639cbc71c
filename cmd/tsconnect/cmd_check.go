package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tsconnect/tsconnect/connector"
)

const checkUsage = `Usage: tsconnect check [flags] TARGET…

Join the tailnet and, for each TARGET, report whether the allowlist allows
it (and by which rule), whether it is reachable through the tailnet (a TCP
connection), and how long that took. For an http:// or https:// URL, also
make a GET request and report the status code (redirects are not
followed; any status counts as reachable). TLS certificates are verified
unless --insecure.

TARGET is a URL (https://grafana/login) or host:port (db:5432). Names may be
MagicDNS short names. A denied target is not dialed.

check exits 0 if every target is allowed and reachable, 5 if not. It starts
no proxy.

Examples:
  tsconnect check --allow .corp.ts.net https://grafana/login db:5432
  tsconnect check --allow grafana.corp.ts.net:443 --json https://grafana/ | jq .
  TSCONNECT_ALLOW=.corp.ts.net tsconnect check http://100.101.102.103:8080/
  tsconnect check --isolate        # can run --isolate work here?
`

// checkResult is one target's row in the table and the --json output.
type checkResult struct {
	Target     string  `json:"target"`
	Host       string  `json:"host"`
	Port       uint16  `json:"port"`
	Allowed    bool    `json:"allowed"`
	Rule       string  `json:"rule"`
	Reason     string  `json:"reason"`
	Reachable  bool    `json:"reachable"`
	Address    string  `json:"address,omitempty"` // where the connection went
	ConnectMS  float64 `json:"connect_ms,omitempty"`
	HTTPStatus int     `json:"http_status,omitempty"`
	HTTPMS     float64 `json:"http_ms,omitempty"`
	Error      string  `json:"error,omitempty"`
	OK         bool    `json:"ok"`

	url *url.URL
}

type checkOutput struct {
	Node    string        `json:"node"`
	OK      bool          `json:"ok"`
	Targets []checkResult `json:"targets"`
}

func cmdCheck(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("check", checkUsage)
	jo := addJoinFlags(fs)
	var asJSON, insecure, isolate bool
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	fs.BoolVar(&insecure, "insecure", false, "do not verify TLS certificates of https:// targets")
	fs.BoolVar(&isolate, "isolate", false, "say whether run --isolate works on this machine (which tier, or what is\nmissing), without joining; exit 0 if it does, 1 if not")
	fs.section("Check")
	if code, done := fs.parse(args, sio); done {
		return code
	}
	if isolate {
		if fs.NArg() > 0 {
			return sio.fail(usageErrorf("check", "--isolate takes no targets"))
		}
		return checkIsolateTiers(sio)
	}
	if fs.NArg() == 0 {
		return sio.fail(usageErrorf("check", "no targets: tsconnect check [flags] TARGET…, e.g. https://grafana/ or db:5432"))
	}
	var results []checkResult
	for _, t := range fs.Args() {
		r, err := parseTarget(t)
		if err != nil {
			return sio.fail(usageErrorf("check", "target %q: %v", t, err))
		}
		results = append(results, r)
	}
	cfg, err := jo.config(fs, sio)
	if err != nil {
		return sio.fail(err)
	}
	sigc, stopSignals := notifySignals()
	defer stopSignals()
	s, code := join(ctx, cfg, jo.verbose, sigc, sio)
	if s == nil {
		return code
	}
	defer s.closeOnPanic()

	hc := s.c.HTTPClient()
	if insecure {
		hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Timeout = jo.dialTimeout

	// A signal stops the checks; a second one cuts leaving short.
	checkCtx, stopChecks := context.WithCancel(ctx)
	defer stopChecks()
	var interrupted os.Signal
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case interrupted = <-sigc:
			sio.logf("%v: stopping", interrupted)
			stopChecks()
		case <-checkCtx.Done():
		}
	}()
	out := checkOutput{Node: s.st.Name, OK: true}
	for i := range results {
		if checkCtx.Err() != nil {
			break
		}
		s.check(checkCtx, hc, &results[i], jo.dialTimeout)
		out.OK = out.OK && results[i].OK
	}
	out.Targets = results
	stopChecks()
	<-watchDone
	if sig := s.close(sigc); sig != nil {
		return signalExit(sig)
	}
	if interrupted != nil {
		return signalExit(interrupted)
	}
	if asJSON {
		enc := json.NewEncoder(sio.Out)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		printChecks(sio.Out, results)
	}
	if !out.OK {
		return exitCheckFailed
	}
	return exitOK
}

// parseTarget reads a URL or host:port.
func parseTarget(t string) (checkResult, error) {
	r := checkResult{Target: t}
	hostport := t
	if strings.Contains(t, "://") {
		u, err := url.Parse(t)
		if err != nil {
			return r, err
		}
		if u.Hostname() == "" {
			return r, fmt.Errorf("no host")
		}
		port := u.Port()
		switch u.Scheme {
		case "http":
			r.url = u
			if port == "" {
				port = "80"
			}
		case "https":
			r.url = u
			if port == "" {
				port = "443"
			}
		default:
			if port == "" {
				return r, fmt.Errorf("a %s:// URL needs a port", u.Scheme)
			}
		}
		hostport = net.JoinHostPort(u.Hostname(), port)
	}
	host, port, err := splitHostPort(hostport)
	if err == errNoHostPort {
		return r, fmt.Errorf("want a URL (https://grafana/) or host:port (db:5432)")
	}
	r.Host, r.Port = host, port
	return r, err
}

var errNoHostPort = errors.New("want host:port")

// splitHostPort parses a destination host:port, the command's one parser
// of them: errNoHostPort if s is not host:port, a bad-port error if the
// port is not 1 to 65535.
func splitHostPort(s string) (string, uint16, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", 0, errNoHostPort
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return host, 0, fmt.Errorf("bad port %q", ps)
	}
	return host, uint16(port), nil
}

// check fills in r: policy first; a denied target is never dialed.
func (s *session) check(ctx context.Context, hc *http.Client, r *checkResult, timeout time.Duration) {
	d := s.c.Check(r.Host, r.Port)
	r.Allowed, r.Rule, r.Reason = d.Allow, d.Rule, d.Reason
	if !d.Allow {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	conn, err := s.c.Dial(dctx, "tcp", net.JoinHostPort(r.Host, strconv.Itoa(int(r.Port))))
	if err != nil {
		r.Error = message(err)
		return
	}
	r.ConnectMS = ms(time.Since(t0))
	r.Address = conn.RemoteAddr().String()
	r.Reachable = true
	conn.Close()
	if r.url == nil {
		r.OK = true
		return
	}
	req, err := http.NewRequestWithContext(ctx, "GET", r.url.String(), nil)
	if err != nil {
		r.Error = err.Error()
		return
	}
	req.Header.Set("User-Agent", "tsconnect-check/"+version)
	t0 = time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		r.Error = message(err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	r.HTTPMS = ms(time.Since(t0))
	r.HTTPStatus = resp.StatusCode
	r.OK = true
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printChecks(w io.Writer, results []checkResult) {
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tPOLICY\tRULE\tREACHABLE\tHTTP\tLATENCY\tNOTE")
	for _, r := range results {
		policy, rule := "allowed", r.Rule
		if !r.Allowed {
			// The reason says most ("no rule matches", "port 22 not in
			// 443"); name the rule too when it does not.
			policy, rule = "denied", r.Reason
			if r.Rule != "" && !strings.Contains(r.Reason, r.Rule) {
				rule = r.Rule + ": " + r.Reason
			}
		}
		reach, httpCol, lat := "-", "-", "-"
		if r.Allowed {
			reach = "no"
			if r.Reachable {
				reach = "yes"
				lat = fmt.Sprintf("%.1fms", r.ConnectMS)
			}
		}
		if r.HTTPStatus != 0 {
			httpCol = strconv.Itoa(r.HTTPStatus)
			lat += fmt.Sprintf(" / %.1fms", r.HTTPMS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Target, policy, rule, reach, httpCol, lat, r.Error)
	}
	tw.Flush()
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		io.WriteString(w, strings.TrimRight(line, " \n"))
		if strings.HasSuffix(line, "\n") {
			io.WriteString(w, "\n")
		}
	}
}

// checkIsolateTiers is check --isolate: a line per tier, what it does or
// why it cannot work here, then the one auto picks.
func checkIsolateTiers(sio stdio) int {
	tiers := []struct {
		name, what string
		err        error
	}{
		{isolateNetns, "a network namespace whose only way out is tsconnect", connector.IsolationAvailable()},
		{isolateLandlock, "TCP connect() limited to the proxy's and forwards' ports", landlockAvailable()},
	}
	best := ""
	for _, t := range tiers {
		if t.err != nil {
			fmt.Fprintf(sio.Out, "isolate %-8s unavailable: %s\n", t.name+":", message(t.err))
			continue
		}
		fmt.Fprintf(sio.Out, "isolate %-8s available (%s)\n", t.name+":", t.what)
		if best == "" {
			best = t.name
		}
	}
	if best == "" {
		fmt.Fprintln(sio.Out, "isolate: unavailable: use the proxy and --forward")
		return exitFailure
	}
	fmt.Fprintf(sio.Out, "isolate=auto: %s\n", best)
	return exitOK
}
