package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tsconnect/tsconnect/connector"
)

const upUsage = `Usage: tsconnect up [flags]

Join the tailnet and serve the proxy (and any --forward) in the foreground
until SIGINT or SIGTERM; then leave the tailnet. A second signal during a
slow shutdown exits at once.

Once ready, up prints the proxy address and shell export lines for the
proxy variables on stdout (with --env-file, it writes the export lines to
that file instead), writes --ready-file, prints the line "ready" on stderr,
and answers 'tsconnect status' on --control-socket. The env file, ready file
and socket are removed on exit, so nothing points at a proxy that is gone.

Examples:
  # A proxy for this shell session.
  tsconnect up --allow .corp.ts.net --env-file /tmp/ts.env &
  until [ -s /tmp/ts.env ]; do sleep 0.2; done; . /tmp/ts.env
  curl -sS http://grafana/api/health
  kill %1

  # Under a supervisor: wait for the ready file, which holds the address.
  tsconnect up --listen 127.0.0.1:0 --ready-file /run/tsconnect.ready \
      --allow .corp.ts.net --forward 127.0.0.1:5432=db:5432

  tsconnect status
`

func cmdUp(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("up", upUsage)
	jo := addJoinFlags(fs)
	po := addProxyFlags(fs)
	var envFile, readyFile, sockPath string
	fs.StringVar(&envFile, "env-file", "", "write the export lines to `file` (mode 0600) instead of stdout;\nremoved on exit")
	fs.StringVar(&readyFile, "ready-file", "", "once ready, write the proxy address to `file` (atomically);\nremoved on exit")
	fs.StringVar(&sockPath, "control-socket", defaultControlSocket(), "serve 'tsconnect status' on this unix socket `path`, mode 0600")
	fs.section("Up")
	if code, done := fs.parse(args, sio); done {
		return code
	}
	if fs.NArg() > 0 {
		return sio.fail(usageErrorf("up", "unexpected argument %q: up takes only flags (did you mean tsconnect run -- %s?)", fs.Arg(0), fs.Arg(0)))
	}
	cfg, err := jo.config(fs, sio)
	if err != nil {
		return sio.fail(err)
	}
	fwds, auditCloser, err := po.apply("up", &cfg, sio)
	if err != nil {
		return sio.fail(err)
	}
	defer auditCloser.Close()
	// The sockets first: a second `up`, or a port in use, fails before a
	// node is created.
	ln, err := listenControl(sockPath)
	if err != nil {
		return sio.fail(err)
	}
	defer ln.Close() // removes the socket file
	listeners, err := listenForwards(fwds)
	if err != nil {
		return sio.fail(err)
	}
	defer closeForwards(listeners)

	sigc, stopSignals := notifySignals()
	defer stopSignals()
	s, code := join(ctx, cfg, jo.verbose, sigc, sio)
	if s == nil {
		return code
	}
	defer s.closeOnPanic()
	defer po.serveMetrics(s)()
	code = serveUp(ctx, s, listeners, ln, envFile, readyFile, sigc, sio)
	if code >= 0 {
		s.close(nil)
		return code
	}
	if sig := s.close(sigc); sig != nil {
		return signalExit(sig)
	}
	return exitOK
}

// serveUp runs until a signal (it returns -1: shut down, watching for a
// second signal) or a failure (it returns the exit code).
func serveUp(ctx context.Context, s *session, fwds []*forward, ln net.Listener, envFile, readyFile string, sigc <-chan os.Signal, sio stdio) int {
	fw, err := startForwards(s, fwds)
	if err != nil {
		return sio.fail(err)
	}
	defer fw.Close()

	started := time.Now()
	srv := &http.Server{
		Handler:           controlHandler(s, fw, started),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()

	proxy := s.c.ProxyAddr()
	var exports strings.Builder
	for _, kv := range s.c.ProxyEnv() {
		name, val, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&exports, "export %s=%s\n", name, shellQuote(val))
	}
	fmt.Fprintf(sio.Out, "# tsconnect: proxy %s (SOCKS5 and HTTP), node %s %s\n", proxy, s.st.Name, addrString(s.st.IPv4))
	if envFile != "" {
		if err := writeFileAtomic(envFile, exports.String()); err != nil {
			return sio.fail(fmt.Errorf("--env-file: %w", err))
		}
		defer os.Remove(envFile)
	} else {
		io.WriteString(sio.Out, exports.String())
	}
	if readyFile != "" {
		if err := writeFileAtomic(readyFile, proxy+"\n"); err != nil {
			return sio.fail(fmt.Errorf("--ready-file: %w", err))
		}
		defer os.Remove(readyFile)
	}
	fmt.Fprintln(sio.Err, "ready")

	select {
	case sig := <-sigc:
		sio.logf("%v: leaving the tailnet", sig)
		return -1
	case <-ctx.Done():
		return -1
	case <-s.c.Done():
		return sio.fail(errors.New("the tailnet node stopped"))
	}
}

// shellQuote quotes v for POSIX sh.
func shellQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// writeFileAtomic writes content to path with mode 0600 through a
// temporary file and a rename, so a reader never sees half of it.
func writeFileAtomic(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename: nothing to remove
	if _, err := io.WriteString(f, content); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// defaultControlSocket is $XDG_RUNTIME_DIR/tsconnect.sock, else
// /tmp/tsconnect-<uid>.sock.
func defaultControlSocket() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "tsconnect.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tsconnect-%d.sock", os.Getuid()))
}

// listenControl listens on the control socket, replacing a stale socket
// file but refusing to take over from a running `up`.
func listenControl(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("--control-socket %s exists and is not a socket", path), hint: "choose another --control-socket path"}
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("another tsconnect up is running at %s", path),
				hint: "see it with 'tsconnect status --control-socket " + path + "', or give this one another --control-socket"}
		}
		os.Remove(path) // stale: its process is gone
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	// Status names the node, its addresses and the allowlist: for this
	// user only.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	return ln, nil
}

// upStatus is what the control socket's /v1/status answers, and what
// `status --json` prints: the connector's Status fields, then the proxy's
// and forwards' counters.
type upStatus struct {
	connector.Status
	ProxyStats proxyStats      `json:"proxy_stats"`
	Forwards   []forwardStatus `json:"forwards"`
	Rules      []ruleStatus    `json:"rules"`
	PID        int             `json:"pid"`
	Version    string          `json:"version"`
	Since      time.Time       `json:"since"`
}

// proxyStats is socks.Stats with JSON names.
type proxyStats struct {
	Accepted     int64 `json:"accepted"`
	Active       int64 `json:"active"`
	Allowed      int64 `json:"allowed"`
	Denied       int64 `json:"denied"`
	Failed       int64 `json:"failed"`
	Refused      int64 `json:"refused"`
	BytesUp      int64 `json:"bytes_up"`
	BytesDown    int64 `json:"bytes_down"`
	AuditDropped int64 `json:"audit_dropped"`
}

// ruleStatus is one allowlist rule and how many connections and requests
// it decided.
type ruleStatus struct {
	Rule string `json:"rule"`
	Name string `json:"name,omitempty"`
	Deny bool   `json:"deny,omitempty"`
	Hits int64  `json:"hits"`
}

func ruleStatuses(st connector.Stats) []ruleStatus {
	out := make([]ruleStatus, 0, len(st.Rules))
	for _, r := range st.Rules {
		out = append(out, ruleStatus{Rule: r.Text, Name: r.Name, Deny: r.Deny, Hits: r.Hits})
	}
	return out
}

func controlHandler(s *session, fw *forwarder, started time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.c.Status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ps := s.c.ProxyStats()
		cs := s.c.Stats()
		out := upStatus{
			Status: st,
			ProxyStats: proxyStats{
				Accepted: ps.Accepted, Active: ps.Active, Allowed: ps.Allowed, Denied: ps.Denied,
				Failed: ps.Failed, Refused: ps.Refused, BytesUp: ps.BytesUp, BytesDown: ps.BytesDown,
				AuditDropped: cs.AuditDropped,
			},
			Forwards: fw.status(),
			Rules:    ruleStatuses(cs),
			PID:      os.Getpid(),
			Version:  version,
			Since:    started.UTC().Truncate(time.Second),
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	})
	health := s.c.HealthHandler()
	for _, path := range []string{"GET /metrics", "GET /healthz", "GET /readyz"} {
		mux.Handle(path, health)
	}
	return mux
}
