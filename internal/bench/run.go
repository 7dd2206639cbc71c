package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tailscale.com/ipn/store/mem"
	"tailscale.com/tsnet"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// The columns of the report, in order.
const (
	ColRaw               = "raw"                // plain loopback TCP to the same server code: the physical ceiling
	ColTSNet             = "tsnet"              // tsnet.Server.Dial in the benchmark process: the ceiling for any tsnet proxy
	ColTSConnectSOCKS5   = "tsconnect-socks5"   // tsconnect's proxy process, SOCKS5
	ColTSConnectCONNECT  = "tsconnect-connect"  // tsconnect's proxy process, HTTP CONNECT
	ColTailscaledSOCKS5  = "tailscaled-socks5"  // tailscaled --tun=userspace-networking --socks5-server
	ColTailscaledCONNECT = "tailscaled-connect" // tailscaled --outbound-http-proxy-listen, CONNECT
)

// AllColumns are the columns a run measures by default.
var AllColumns = []string{ColRaw, ColTSNet, ColTSConnectSOCKS5, ColTSConnectCONNECT, ColTSConnectIsolate, ColTailscaledSOCKS5, ColTailscaledCONNECT}

// serverPort is the bench server's port on the tailnet.
const serverPort = 7000

// Config sizes a run. Every proxy column gets a process of its own, started
// and torn down by the run, so start time, memory and teardown are its own.
type Config struct {
	Bulk         int64         // bytes per bulk transfer, each direction
	BulkReps     int           // bulk transfers per direction; the median is reported
	Conns        int           // sequential new connections: latency percentiles and stall rate
	Concurrent   int           // connections held open at once
	Hold         time.Duration // how long they are held
	Settle       time.Duration // wait between first byte and "RSS idle"
	IdleWait     time.Duration // wait between the bulk transfers and "RSS after idle"
	StallOver    time.Duration // a new connection slower than this is a stall
	TeardownWait time.Duration // wait this long for a node to leave the node list; 0: do not wait
	Verify       bool          // check every downloaded byte against the pattern
	Columns      []string      // which columns, in order; nil: AllColumns
	TSConnect    string        // TSConnectAuto, TSConnectCmd or TSConnectStandin
	TSFlags      []string      // more flags for the tsconnect columns' processes (e.g. --opaque-tunnels)
	ProfileDir   string        // if set, profile the stand-in and tailscaled into it (see profile.go)
	ProfileTime  time.Duration // length of each CPU profile
	AllowBench   bool          // run dnsfilter's BenchmarkCheck for the allowlist row
	Logf         func(format string, args ...any)
}

// FullConfig is the configuration of the published figures.
func FullConfig() Config {
	return Config{
		Bulk:         256 << 20,
		BulkReps:     3,
		Conns:        3000,
		Concurrent:   1000,
		Hold:         10 * time.Second,
		Settle:       2 * time.Second,
		IdleWait:     30 * time.Second,
		StallOver:    time.Second,
		TeardownWait: 200 * time.Second, // tailscaled with --statedir leaves only at the ephemeral timeout (120 s)
		TSConnect:    TSConnectAuto,
		ProfileTime:  10 * time.Second,
		AllowBench:   true,
	}
}

// SmokeConfig is a run small enough for `go test ./...`: it checks that
// every column carries the right bytes, not how fast.
func SmokeConfig() Config {
	return Config{
		Bulk:       1 << 20,
		BulkReps:   1,
		Conns:      20,
		Concurrent: 20,
		Hold:       100 * time.Millisecond,
		StallOver:  time.Second,
		Verify:     true,
		TSConnect:  TSConnectAuto,
	}
}

// Result is what one column measured. Zero values mean "not applicable".
type Result struct {
	Column   string
	Commands []string // how the proxy was started
	Path     string   // how the tailnet carried the traffic: direct or DERP

	StartToFirstByte time.Duration // process (or tsnet.Server) start to the first answered request

	Down, Up           []float64 // MB/s (10^6 bytes per second) of each bulk transfer
	DownBytes, UpBytes int64     // payload bytes confirmed, all transfers
	ProxyCPUDown       time.Duration
	ProxyCPUUp         time.Duration // the proxy process's CPU time over the transfers

	Lat        []time.Duration // sequential new connections that succeeded, sorted
	ConnErrors int             // sequential new connections that failed
	Stalls     int             // sequential new connections slower than StallOver (errors included)

	ConcOK     int // connections held and still answering after the hold
	ConcErrors int // failed to open, or to answer after the hold

	RSSIdle, RSSLoad, RSSAfterIdle, RSSConc int64 // bytes

	Exit     time.Duration // SIGTERM (or Close) to process exit
	ExitNote string        // why Exit is missing or meaningless
	Teardown time.Duration // SIGTERM (or Close) to the node gone from `headscale nodes list`
	GoneNote string        // why Teardown is missing

	Errs []error
}

func (r *Result) fail(err error) {
	if err != nil {
		r.Errs = append(r.Errs, err)
	}
}

// Report is a whole run.
type Report struct {
	Config       Config
	Machine      Machine
	TSConnectPkg string // the package the tsconnect columns ran
	Results      []*Result
	Allow        []AllowCost
	Profiles     []string // files written to Config.ProfileDir
	Start, End   time.Time
	LoadAfter    string
}

// Run measures cfg.Columns against one bench server node on ctl's tailnet.
// It returns an error only when nothing could be measured; failures inside a
// column are in its Result.Errs.
func Run(ctx context.Context, ctl *tailnettest.Control, cfg Config) (*Report, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Columns == nil {
		cfg.Columns = AllColumns
	}
	rep := &Report{Config: cfg, Machine: machineFacts(), Start: time.Now()}
	if err := raiseNoFile(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, ctl: ctl, srv: new(Server)}
	defer r.close()
	if err := r.setup(); err != nil {
		return nil, err
	}
	for _, col := range cfg.Columns {
		if strings.HasPrefix(col, "tsconnect") && r.tsconnect == "" {
			bin, pkg, err := BuildTSConnect(r.dir, cfg.TSConnect)
			if err != nil {
				return nil, err
			}
			r.tsconnect, rep.TSConnectPkg = bin, pkg
		}
		if strings.HasPrefix(col, "tailscaled") && r.tailscaled == "" {
			var err error
			if r.tailscaled, r.tailscale, err = TailscaledBinaries(); err != nil {
				return nil, err
			}
		}
	}
	for _, col := range cfg.Columns {
		if ctx.Err() != nil {
			break
		}
		cfg.Logf("bench: measuring %s", col)
		res := r.column(ctx, col)
		for _, err := range res.Errs {
			cfg.Logf("bench: %s: %v", col, err)
		}
		rep.Results = append(rep.Results, res)
	}
	if cfg.ProfileDir != "" && ctx.Err() == nil {
		files, err := r.profile(ctx)
		rep.Profiles = files
		if err != nil {
			cfg.Logf("bench: profiling: %v", err)
		}
	}
	if cfg.AllowBench && ctx.Err() == nil {
		var err error
		if rep.Allow, err = allowCost(); err != nil {
			cfg.Logf("bench: allowlist benchmark: %v", err)
		}
	}
	rep.End = time.Now()
	rep.LoadAfter = loadavg()
	return rep, nil
}

type runner struct {
	cfg     Config
	ctl     *tailnettest.Control
	srv     *Server
	node    *tailnettest.Node
	target  string // the bench server on the tailnet: fqdn:port
	rawAddr string // the same server on 127.0.0.1
	dir     string

	tsconnect, tailscaled, tailscale string

	closers []func()
}

func (r *runner) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

func (r *runner) setup() error {
	var err error
	if r.dir, err = os.MkdirTemp("", "tsconnect-bench-"); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { os.RemoveAll(r.dir) })
	if r.node, err = r.ctl.NewNode("bench-server", "tag:web"); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { tailnettest.CloseWithin(r.node, 30*time.Second) })
	ln, err := r.node.Listen("tcp", fmt.Sprintf(":%d", serverPort))
	if err != nil {
		return err
	}
	r.closers = append(r.closers, func() { ln.Close() })
	go r.srv.Serve(ln)
	r.target = net.JoinHostPort(r.node.FQDN, strconv.Itoa(serverPort))

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.closers = append(r.closers, func() { raw.Close() })
	go r.srv.Serve(raw)
	r.rawAddr = raw.Addr().String()
	return nil
}

func (r *runner) newKey() (string, error) {
	return r.ctl.NewKey(tailnettest.KeyOptions{Tags: []string{"tag:sandbox"}, Reusable: true, Ephemeral: true})
}

// column runs one column's whole life: start, measurements, teardown.
func (r *runner) column(ctx context.Context, col string) *Result {
	res := &Result{Column: col}
	switch col {
	case ColRaw:
		res.Path = "loopback TCP"
		r.measure(ctx, res, tcpDialer(r.rawAddr), 0)
	case ColTSNet:
		r.tsnetColumn(ctx, res)
	case ColTSConnectSOCKS5, ColTSConnectCONNECT, ColTSConnectIsolate, ColTailscaledSOCKS5, ColTailscaledCONNECT:
		r.procColumn(ctx, res)
	default:
		res.fail(fmt.Errorf("bench: unknown column %q", col))
	}
	return res
}

func (r *runner) tsnetColumn(ctx context.Context, res *Result) {
	key, err := r.newKey()
	if err != nil {
		res.fail(err)
		return
	}
	dir, err := os.MkdirTemp(r.dir, "tsnet-")
	if err != nil {
		res.fail(err)
		return
	}
	name := "bench-tsnet"
	s := &tsnet.Server{Dir: dir, Store: new(mem.Store), Hostname: name, Ephemeral: true, AuthKey: key,
		ControlURL: r.ctl.URL, Logf: func(string, ...any) {}, UserLogf: func(string, ...any) {}}
	res.Commands = []string{"tsnet.Server{Ephemeral: true, Store: mem}.Dial, in the benchmark process"}
	t0 := time.Now()
	upCtx, cancel := context.WithTimeout(ctx, time.Minute)
	_, err = s.Up(upCtx)
	cancel()
	if err != nil {
		s.Close()
		res.fail(err)
		return
	}
	dial := func(ctx context.Context) (net.Conn, error) { return s.Dial(ctx, "tcp", r.target) }
	if err := firstByte(ctx, dial, nil); err != nil {
		s.Close()
		res.fail(err)
		return
	}
	res.StartToFirstByte = time.Since(t0)
	res.Path = r.awaitDirect(ctx, name, dial)
	r.measure(ctx, res, dial, 0)
	t1 := time.Now()
	if err := tailnettest.CloseWithin(s, 30*time.Second); err != nil {
		res.fail(fmt.Errorf("bench: tsnet.Server.Close: %w", err))
		res.ExitNote = "Close hung (gave up after 30 s)"
	} else {
		res.Exit = time.Since(t1)
	}
	r.waitGone(res, name, t1)
}

func (r *runner) procColumn(ctx context.Context, res *Result) {
	key, err := r.newKey()
	if err != nil {
		res.fail(err)
		return
	}
	dir, err := os.MkdirTemp(r.dir, res.Column+"-")
	if err != nil {
		res.fail(err)
		return
	}
	name := "bench-" + res.Column
	socks, err := freeAddr()
	if err != nil {
		res.fail(err)
		return
	}
	var dial Dialer
	var p *proc
	t0 := time.Now()
	if res.Column == ColTSConnectIsolate {
		var stop func()
		if p, dial, stop, err = startIsolated(ctx, r.tsconnect, dir, r.ctl.URL, key, name, r.target, r.cfg.TSFlags...); err == nil {
			defer stop()
		}
	} else if strings.HasPrefix(res.Column, "tsconnect") {
		// The allowlist names exactly the bench server: the policy check runs
		// on every connection, as in real use.
		p, err = startTSConnect(r.tsconnect, dir, r.ctl.URL, key, socks, name, r.target, nil, r.cfg.TSFlags...)
		dial = socks5Dialer(socks, r.target)
		if res.Column == ColTSConnectCONNECT {
			dial = connectDialer(socks, r.target) // one port serves both
		}
	} else {
		var httpAddr string
		if httpAddr, err = freeAddr(); err != nil {
			res.fail(err)
			return
		}
		p, err = startTailscaled(r.tailscaled, r.tailscale, dir, r.ctl.URL, key, socks, httpAddr, name)
		if err == nil {
			upCtx, cancel := context.WithTimeout(ctx, time.Minute)
			err = p.tailscaleUp(upCtx)
			cancel()
		}
		dial = socks5Dialer(socks, r.target)
		if res.Column == ColTailscaledCONNECT {
			dial = connectDialer(httpAddr, r.target)
		}
	}
	if p != nil {
		res.Commands = p.commands
		defer func() {
			select {
			case <-p.exited:
			default:
				p.cmd.Process.Kill()
				<-p.exited
			}
		}()
	}
	if err != nil {
		res.fail(err)
		return
	}
	if err := firstByte(ctx, dial, p); err != nil {
		res.fail(err)
		return
	}
	res.StartToFirstByte = time.Since(t0)
	res.Path = r.awaitDirect(ctx, name, dial)
	r.measure(ctx, res, dial, p.pid())
	t1 := time.Now()
	res.Exit, err = p.stop(30 * time.Second)
	if err != nil {
		res.fail(err)
		res.ExitNote = "hung; killed after 30 s"
	}
	r.waitGone(res, name, t1)
}

func (r *runner) waitGone(res *Result, name string, since time.Time) {
	if r.cfg.TeardownWait <= 0 {
		res.GoneNote = "not measured"
		return
	}
	d, err := r.ctl.WaitGone(name, since, r.cfg.TeardownWait)
	if err != nil {
		res.GoneNote = fmt.Sprintf("> %v", r.cfg.TeardownWait)
		return
	}
	res.Teardown = d
}

// firstByte retries a ping through dial until one is answered: the proxy
// may not listen yet, or the tailnet path may still be forming.
func firstByte(ctx context.Context, dial Dialer, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if p != nil {
			select {
			case <-p.exited:
				return fmt.Errorf("bench: %s exited before serving:\n%s", p.cmd.Path, p.logTail())
			default:
			}
		}
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		err = pingOnce(actx, dial)
		acancel()
		if err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	msg := ""
	if p != nil {
		msg = "\n" + p.logTail()
	}
	return fmt.Errorf("bench: no answer through the proxy within a minute: %v%s", err, msg)
}

// pingOnce opens a connection, sends one request and closes it.
func pingOnce(ctx context.Context, dial Dialer) error {
	c, err := dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	return ping(c)
}

// awaitDirect waits (up to 15 s, pinging) until the bench server reaches
// node name over a direct UDP path rather than DERP, and says which it is.
// Disco finds the direct path within a second or so of the first packets.
func (r *runner) awaitDirect(ctx context.Context, name string, dial Dialer) string {
	lc, err := r.node.LocalClient()
	if err != nil {
		return "unknown"
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := lc.Status(ctx)
		if err == nil {
			for _, ps := range st.Peer {
				if strings.HasPrefix(ps.DNSName, name+".") && ps.CurAddr != "" {
					return "direct (UDP " + ps.CurAddr + ")"
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "DERP (no direct path after 15 s)"
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		pingOnce(pctx, dial)
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
}

// measure runs the common measurements through dial; pid is the proxy
// process whose memory and CPU are reported (0: none).
func (r *runner) measure(ctx context.Context, res *Result, dial Dialer, pid int) {
	cfg := r.cfg
	if pid != 0 {
		sleep(ctx, cfg.Settle)
		res.RSSIdle = mustRSS(res, pid)
	}
	r.sequential(ctx, res, dial)
	r.bulk(ctx, res, dial, pid)
	if pid != 0 {
		res.RSSLoad = mustRSS(res, pid)
		sleep(ctx, cfg.IdleWait)
		res.RSSAfterIdle = mustRSS(res, pid)
	}
	r.concurrent(ctx, res, dial, pid)
}

func mustRSS(res *Result, pid int) int64 {
	n, err := rss(pid)
	res.fail(err)
	return n
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// sequential opens cfg.Conns connections one after another, each carrying
// one ping: new-connection latency and stalls.
func (r *runner) sequential(ctx context.Context, res *Result, dial Dialer) {
	var firstErr error
	for range r.cfg.Conns {
		if ctx.Err() != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t := time.Now()
		err := pingOnce(cctx, dial)
		d := time.Since(t)
		cancel()
		if d > r.cfg.StallOver {
			res.Stalls++
		}
		if err != nil {
			res.ConnErrors++
			if firstErr == nil {
				firstErr = fmt.Errorf("bench: new connection: %w", err)
			}
			continue
		}
		res.Lat = append(res.Lat, d)
	}
	slices.Sort(res.Lat)
	res.fail(firstErr)
}

// bulk downloads, then uploads, cfg.Bulk bytes cfg.BulkReps times, each on
// a new connection; the time excludes opening it.
func (r *runner) bulk(ctx context.Context, res *Result, dial Dialer, pid int) {
	for _, up := range []bool{false, true} {
		cpu0 := procCPU(pid)
		for range r.cfg.BulkReps {
			if ctx.Err() != nil {
				return
			}
			c, err := dial(ctx)
			if err != nil {
				res.fail(fmt.Errorf("bench: bulk: %w", err))
				continue
			}
			stop := context.AfterFunc(ctx, func() { c.Close() })
			t := time.Now()
			var n int64
			if up {
				if err = upload(c, r.cfg.Bulk); err == nil {
					n = r.cfg.Bulk
				}
			} else {
				n, err = download(c, r.cfg.Bulk, r.cfg.Verify)
			}
			d := time.Since(t)
			stop()
			c.Close()
			if err != nil {
				res.fail(fmt.Errorf("bench: bulk (upload %v): %w", up, err))
				continue
			}
			mbps := float64(n) / d.Seconds() / 1e6
			if up {
				res.Up, res.UpBytes = append(res.Up, mbps), res.UpBytes+n
			} else {
				res.Down, res.DownBytes = append(res.Down, mbps), res.DownBytes+n
			}
		}
		if pid != 0 {
			if up {
				res.ProxyCPUUp = procCPU(pid) - cpu0
			} else {
				res.ProxyCPUDown = procCPU(pid) - cpu0
			}
		}
	}
}

// concurrent opens cfg.Concurrent connections (32 at a time), each
// answering a ping, holds them for cfg.Hold while sampling the proxy's
// RSS, then pings each again.
func (r *runner) concurrent(ctx context.Context, res *Result, dial Dialer, pid int) {
	n := r.cfg.Concurrent
	if n <= 0 {
		return
	}
	conns := make([]net.Conn, n)
	var errCount atomic.Int64
	var firstErr error
	var errOnce sync.Once
	note := func(err error) {
		errCount.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	parallel(n, 32, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := dial(cctx)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if err = ping(c); err != nil {
				c.Close()
			}
		}
		if err != nil {
			note(fmt.Errorf("bench: opening concurrent connection: %w", err))
			return
		}
		conns[i] = c
	})
	var peak int64
	end := time.Now().Add(r.cfg.Hold)
	for {
		if pid != 0 {
			if v, err := rss(pid); err == nil && v > peak {
				peak = v
			}
		}
		if !time.Now().Before(end) || ctx.Err() != nil {
			break
		}
		sleep(ctx, min(250*time.Millisecond, time.Until(end)))
	}
	res.RSSConc = peak
	var ok atomic.Int64
	parallel(n, 32, func(i int) {
		c := conns[i]
		if c == nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := ping(c); err != nil {
			note(fmt.Errorf("bench: concurrent connection after the hold: %w", err))
			return
		}
		ok.Add(1)
	})
	res.ConcOK, res.ConcErrors = int(ok.Load()), int(errCount.Load())
	res.fail(firstErr)
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(n, workers int, f func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// raiseNoFile lifts this process's open-file limit to its hard limit, for
// the concurrent connections; the proxy processes inherit it.
func raiseNoFile() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("bench: raising RLIMIT_NOFILE: %w", err)
	}
	return nil
}

// procCPU returns the user+system CPU time of process pid (0: none).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100
