package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tsconnect/tsconnect/internal/demonet"
	"github.com/tsconnect/tsconnect/secrets"
)

const demoUsage = `Usage: tsconnect demo [flags] [-- COMMAND [ARGS…]]

Try tsconnect with no account, no internet and no root. demo starts a
throwaway tailnet inside this process: a control plane (tailscale's test
control server; the demo control plane, not for production), a DERP relay,
a STUN server and two service nodes,

  web        tag:web  HTTP on port 80             on the demo allowlist
  secret-db  tag:db   HTTP on 80, TCP on 5432     not on it

then joins it with the same connector 'run' and 'up' use, with the
allowlist web.demo.test. Everything binds 127.0.0.1 (random ports), and no
node sends a packet anywhere but loopback: no gateway or port-mapping
probes, no STUN to the internet, no log upload.

Without COMMAND, demo walks through it: the node joins, an allowed request
succeeds, two denied ones are refused (HTTP 403, SOCKS5 0x02) without
secret-db seeing a connection, a request for secret-db inside a tunnel to
web is refused too (403: a tunnel reaches only the name it was opened
for), and the node leaves the tailnet.

With COMMAND, demo runs it with the proxy in its environment, exactly as
'tsconnect run' does, so any client can be tried; the exit status is
COMMAND's.

Examples:
  tsconnect demo
  tsconnect demo -- curl -sS http://web/
  tsconnect demo -- curl -sS http://secret-db/       # 403, names the rule
  tsconnect demo -- sh -c 'curl -sS -x "$ALL_PROXY" http://web.demo.test/'
  tsconnect demo --allow .demo.test -- curl -sS http://secret-db/
  tsconnect demo --forward 8080=web:80 -- sh -c 'curl -sS http://127.0.0.1:8080/'
  sudo tsconnect demo --isolate=netns -- curl -sS --noproxy '*' http://web/  # no proxy needed
`

// demoAllow is the demo's default allowlist: web, not secret-db.
const demoAllow = "web." + demonet.Domain

func runDemo(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("demo", demoUsage)
	var allow listFlag
	var policy string
	var timeout time.Duration
	var verbose bool
	fs.Var(&allow, "allow", "allowlist `list` (as for run); default "+demoAllow)
	fs.StringVar(&policy, "policy", "", "the allowlist from a policy `file` (as for run), instead of --allow")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "give up starting the demo tailnet and joining it after this `duration`")
	fs.section("Demo")
	po := addProxyFlags(fs)
	// The demo must work on a machine where 1055 is taken.
	po.listen = "127.0.0.1:0"
	fs.Lookup("listen").DefValue = po.listen
	childFlags := addChildFlags(fs)
	fs.BoolVar(&verbose, "v", false, "verbose: logs of the demo tailnet and of the node on stderr")
	fs.section("Output")
	if code, done := fs.parse(args, sio); done {
		return code
	}
	child, err := lookupChild("demo", childFlags)
	if err != nil {
		return sio.fail(err)
	}
	if len(allow) == 0 && policy == "" {
		allow = listFlag{demoAllow}
	}
	jo := &joinOpts{allow: allow, policy: policy, timeout: timeout, dialTimeout: 15 * time.Second, verbose: verbose}
	cfg, err := jo.nodeConfig("demo", sio)
	if err != nil {
		return sio.fail(err)
	}
	fwds, auditCloser, err := po.apply("demo", &cfg, sio)
	if err != nil {
		return sio.fail(err)
	}
	defer auditCloser.Close()
	var path string
	argv := fs.Args()
	if len(argv) > 0 {
		if path, err = lookCommand(argv[0]); err != nil {
			return sio.fail(err)
		}
	}
	listeners, err := listenForwards(fwds)
	if err != nil {
		return sio.fail(err)
	}
	defer closeForwards(listeners)

	sigc, stopSignals := notifySignals()
	defer stopSignals()

	// The demo tailnet comes first: demonet.Start makes the process-wide
	// settings that keep every node in this process on loopback.
	startCtx, cancelStart := context.WithTimeout(ctx, timeout)
	defer cancelStart()
	sio.logf("starting the demo tailnet on 127.0.0.1 (%s)", demonet.ControlLabel)
	t0 := time.Now()
	n, err := demonet.Start(startCtx, demonet.Options{Logf: cfg.Logf}) // -v: the node's own logger
	if err != nil {
		return sio.fail(fmt.Errorf("demo: %w", err))
	}
	defer n.Close()
	sio.logf("demo tailnet up in %v: control plane %s; nodes %s", time.Since(t0).Round(100*time.Millisecond), n.ControlURL, strings.Join(n.Nodes(), ", "))

	key, err := secrets.NewKey(n.AuthKey())
	if err != nil {
		return sio.fail(err)
	}
	cfg.ControlURL = n.ControlURL
	cfg.KeySource = secrets.Static(key)
	cfg.Tags = []string{"tag:sandbox"}
	// --timeout bounds starting, not the session: the join gets what is
	// left of it as its ready timeout, and the connector's life is bound
	// to ctx alone (joining under startCtx closed the proxy a minute in,
	// while the command kept running).
	deadline, _ := startCtx.Deadline()
	if cfg.ReadyTimeout = time.Until(deadline); cfg.ReadyTimeout <= 0 {
		return sio.fail(fmt.Errorf("demo: %w", context.DeadlineExceeded))
	}
	s, code := join(ctx, cfg, verbose, sigc, sio)
	if s == nil {
		return code
	}
	defer s.closeOnPanic()
	defer po.serveMetrics(s)()
	// No wait for the service nodes to hear of the new node: the
	// connector greets each peer before its first connection.

	if len(argv) > 0 {
		code = runChild(ctx, s, listeners, path, argv, child, sigc, sio)
		if sig := s.close(sigc); sig != nil {
			return signalExit(sig)
		}
		return code
	}
	fw, err := startForwards(s, listeners)
	if err != nil {
		s.close(nil)
		return sio.fail(err)
	}
	defer fw.Close()
	if err := walkthrough(ctx, n, s, sio); err != nil {
		s.close(nil)
		return sio.fail(fmt.Errorf("demo: %w", err))
	}
	return exitOK
}

// walkthrough is the demo's story, printed on stdout. It closes the
// session.
func walkthrough(ctx context.Context, n *demonet.Net, s *session, sio stdio) error {
	out := sio.Out
	proxyAddr := s.c.ProxyAddr()
	fmt.Fprintf(out, "tsconnect demo: a throwaway tailnet in this process, on 127.0.0.1 only (%s)\n", demonet.ControlLabel)
	fmt.Fprintf(out, "  control plane  %s\n", n.ControlURL)
	for _, svc := range []*demonet.Service{n.Web, n.Other} {
		fmt.Fprintf(out, "  %-13s  %-20s %-15s %-8s ports %s\n", svc.Name, svc.FQDN, svc.IP4, strings.Join(svc.Tags, ","), joinInts(svc.Ports))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "1. join   %s joined as %s (%s), ephemeral\n", s.st.Name, addrString(s.st.IPv4, s.st.IPv6), strings.Join(s.st.Tags, ","))
	fmt.Fprintf(out, "          proxy %s (SOCKS5 and HTTP on one port); allowlist %s\n", proxyAddr, s.c.Allowlist())

	hc := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr}), DisableKeepAlives: true},
		Timeout:   20 * time.Second,
	}
	defer hc.CloseIdleConnections()
	status, body, err := get(hc, "http://web/")
	if err != nil {
		return fmt.Errorf("GET http://web/ through the proxy: %w", err)
	}
	fmt.Fprintf(out, "2. allow  GET http://web/ through the HTTP proxy: %s %q\n", status, body)
	if !strings.HasPrefix(status, "200") {
		return fmt.Errorf("GET http://web/: %s, want 200", status)
	}

	dbBefore := n.Other.Accepted()
	status, body, err = get(hc, "http://secret-db/")
	if err != nil {
		return fmt.Errorf("GET http://secret-db/ through the proxy: %w", err)
	}
	fmt.Fprintf(out, "3. deny   GET http://secret-db/ through the HTTP proxy: %s %q\n", status, body)

	d, err := proxy.SOCKS5("tcp", proxyAddr, nil, proxy.Direct)
	if err != nil {
		return err
	}
	conn, serr := d.(proxy.ContextDialer).DialContext(ctx, "tcp", "secret-db:5432")
	if serr == nil {
		conn.Close()
		return errors.New("SOCKS5 CONNECT secret-db:5432 succeeded; the allowlist should deny it")
	}
	fmt.Fprintf(out, "4. deny   SOCKS5 CONNECT secret-db:5432: %s\n", socksReason(serr))
	dbSaw := n.Other.Accepted() - dbBefore
	fmt.Fprintf(out, "          secret-db accepted %d connections: the denied requests never reached the tailnet\n", dbSaw)
	allowsDB := s.c.Check("secret-db", 80).Allow
	if !allowsDB && (!strings.HasPrefix(status, "403") || dbSaw != 0) {
		return fmt.Errorf("secret-db: %s and %d connections; want 403 and none", status, dbSaw)
	}

	// A tunnel allowed to web carries only requests for web: a reverse
	// proxy routing by Host would otherwise serve secret-db's site to it.
	tconn, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", "web:80")
	if err != nil {
		return fmt.Errorf("SOCKS5 CONNECT web:80: %w", err)
	}
	tconn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(tconn, "GET / HTTP/1.1\r\nHost: secret-db\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tconn), nil)
	if err != nil {
		tconn.Close()
		return fmt.Errorf("a request for secret-db inside a tunnel to web: %w", err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	tconn.Close()
	fmt.Fprintf(out, "5. deny   Host: secret-db inside a SOCKS5 tunnel to web:80: %s %q\n", resp.Status, strings.SplitN(string(b), "\n", 2)[0])

	name := s.st.Name
	t0 := time.Now()
	if sig := s.close(nil); sig != nil {
		return errors.New("interrupted")
	}
	for time.Since(t0) < 5*time.Second && slices.Contains(n.Nodes(), name) {
		time.Sleep(10 * time.Millisecond)
	}
	nodes := n.Nodes()
	if slices.Contains(nodes, name) {
		return fmt.Errorf("%s is still on the tailnet 5s after leaving", name)
	}
	fmt.Fprintf(out, "6. leave  %s logged out and left the tailnet in %v; nodes now: %s\n", name, time.Since(t0).Round(time.Millisecond), strings.Join(nodes, ", "))
	fmt.Fprintf(out, "\nTry any client:  tsconnect demo -- curl -sS http://web/\n")
	return nil
}

// get fetches u and returns the status and the body's first line.
func get(hc *http.Client, u string) (status, body string, err error) {
	resp, err := hc.Get(u)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return resp.Status, line, nil
}

// socksReason is the SOCKS5 reply in err (x/net/proxy reports a reply as
// "unknown error <text>").
func socksReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "unknown error "); i >= 0 {
		msg = msg[i+len("unknown error "):]
	}
	if msg == "connection not allowed by ruleset" {
		msg += " (reply 0x02)"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		msg += " (timeout)"
	}
	return msg
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
