// Package connector starts an ephemeral, userspace tailnet node inside a
// sandbox and dials through it, fail-closed.
//
// A [Connector] is a tsnet node with fixed properties: always ephemeral,
// state kept in memory, log upload off, and a private 0700 temporary
// directory (for the few files tsnet insists on writing) that is removed on
// [Connector.Close]. It needs no root, no TUN device and no NET_ADMIN, and it
// only makes outbound connections.
//
// # Authentication
//
// The auth key comes from a [secrets.Source] (the environment by default,
// or Vault). It is fetched once at [Start], handed to the node, and never
// written anywhere. [Start] returns only when the node is running with
// tailnet addresses; if the control plane rejects the key, or wants an
// interactive login, it fails within seconds with an error that says what
// to do, rather than waiting for a browser that will never come.
//
// # Dialing
//
// [Connector.Dial] resolves MagicDNS names from the node's network map and
// other names through the tailnet's own DNS routes (split DNS), never
// through the host's resolver. It dials only destinations that route
// through the tailnet (a peer's address or an accepted subnet route),
// straight into the node's network stack: unlike tsnet.Server.Dial, it never
// falls back to the host network.
//
// # Connections
//
// Every connection the connector opens — the proxy's tunnels, [Connector.Dial],
// [Connector.HTTPClient], [Connector.Forward] — passes one layer that
// decides (allowlist, routability), dials, counts ([Connector.Stats],
// [Connector.WriteMetrics]), closes it after Config.IdleTimeout without
// traffic, bounds how many are open (Config.MaxConns) and writes its
// [AuditRecord] when it ends (Config.AuditLog, Config.Audit).
//
// # Teardown
//
// [Connector.Close] logs the node out, so it leaves the control plane's
// machine list at once rather than after the ephemeral inactivity timeout,
// then closes every listener and connection and removes the temporary
// directory. Cancelling the context given to [Start] does the same.
//
// # Embedding
//
// Several connectors may run in one process, each with its own node,
// allowlist, proxy, counters and audit sink. What they share, because it
// belongs to the process:
//
//   - Log upload to Tailscale is switched off for the whole process at the
//     first Start (envknob.SetNoLogsNoSupport, logtail.Disable), and stays
//     off.
//   - One memory trimmer serves the process (see Config.KeepMemory): it
//     runs while at least one connector that wants it is open, and forces a
//     garbage collection and debug.FreeOSMemory once traffic stops after a
//     burst. Set KeepMemory on every connector to leave memory to the
//     runtime.
//   - Start removes private directories (tsconnect-* in os.TempDir) that
//     connectors of this user's dead processes left; never those of a live
//     process.
//   - The context given to Start bounds the connector's life, not only the
//     start: cancel it only to close the connector.
package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"tailscale.com/client/local"
	"tailscale.com/envknob"
	"tailscale.com/ipn"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/logtail"
	"tailscale.com/tsnet"
	"tailscale.com/wgengine/netstack"

	"github.com/tsconnect/tsconnect/dnsfilter"
	"github.com/tsconnect/tsconnect/internal/peerapi"
	"github.com/tsconnect/tsconnect/secrets"
	"github.com/tsconnect/tsconnect/socks"
)

// DefaultHostnamePrefix is the node name prefix when Config.HostnamePrefix
// is empty: nodes are named "tsconnect-<uuid>".
const DefaultHostnamePrefix = "tsconnect"

// Teardown bounds: Close returns within CloseTimeout, of which logging out
// takes at most LogoutTimeout (the node's own shutdown gets the rest).
const (
	CloseTimeout  = 8 * time.Second
	LogoutTimeout = 3 * time.Second
)

// DefaultControlURL is Tailscale's coordination server, used when neither
// Config.ControlURL nor the environment names one.
const DefaultControlURL = "https://controlplane.tailscale.com"

// Config configures a Connector. The zero value joins Tailscale's control
// plane with the key in TS_AUTHKEY as an untagged node named
// "tsconnect-<uuid>".
type Config struct {
	// HostnamePrefix is the node name prefix; the node is named
	// "<prefix>-<uuid>". Empty means "tsconnect".
	HostnamePrefix string

	// Hostname, if set, is the exact node name, overriding HostnamePrefix.
	Hostname string

	// ControlURL is the coordination server. Empty means $TS_CONTROL_URL,
	// else $TAILSCALE_LOGIN_SERVER, else Tailscale's own
	// (DefaultControlURL). Use it for Headscale.
	ControlURL string

	// Tags are the ACL tags the node advertises ("tag:sandbox"). The key
	// must be allowed to carry them. Empty means none: the node then takes
	// the tags the key itself carries, if any.
	Tags []string

	// KeySource supplies the auth key. Nil means secrets.Env()
	// (TS_AUTHKEY, then TS_AUTH_KEY).
	KeySource secrets.Source

	// ReadyTimeout bounds Start: joining, key checks and waiting for
	// addresses. Zero means 30s.
	ReadyTimeout time.Duration

	// DialTimeout bounds each Dial that has no earlier deadline. Zero means
	// 15s.
	DialTimeout time.Duration

	// IgnoreSubnetRoutes, if true, refuses destinations behind peers'
	// subnet routes; only peers' own addresses are dialed. By default
	// accepted subnet routes are used, as the reference integration does.
	IgnoreSubnetRoutes bool

	// Allow is the destination allowlist, enforced by Dial, the proxy and
	// HTTPClient: on the requested name before anything is resolved, and
	// on where it resolved (which must be on the tailnet). Nil or empty
	// means anything the tailnet routes; the tailnet ACL is then the only
	// boundary, and Start warns through UserLogf.
	Allow *dnsfilter.List

	// Policy, if set, is the allowlist as a policy file (see
	// dnsfilter.ParsePolicy): its List is enforced as Allow is, its rule
	// names appear in denials, Stats and metrics, and Start refuses a
	// policy whose own tests fail (a *ConfigError for Policy wrapping a
	// *dnsfilter.PolicyError), as a policy push is rejected. Set Policy or
	// Allow, not both.
	Policy *dnsfilter.Policy

	// Tunnels configures the check of the TLS SNI and HTTP Host inside the
	// proxy's and forwards' tunnels; the zero value checks (see
	// TunnelPolicy).
	Tunnels TunnelPolicy

	// Proxy, if set, starts the local SOCKS5 + HTTP proxy. Nil: no proxy.
	Proxy *ProxyConfig

	// AuditLog, if set, receives one JSON line (an AuditRecord) per
	// connection the connector opened or refused — the proxy's, Dial's,
	// HTTPClient's, forwards' — when it ends, and per plain-http request
	// through the proxy. Lines are written by a single goroutine, so it need
	// not be safe for concurrent use. A slow writer never stalls a
	// connection: with 1024 records queued, further ones are dropped and
	// counted in Stats.AuditDropped.
	AuditLog io.Writer

	// Audit, if set, receives the same records as AuditLog, on the same
	// goroutine.
	Audit func(AuditRecord)

	// IdleTimeout closes a connection (a proxy tunnel, a forward, one from
	// Dial) that carried no bytes either way for this long. Zero means one
	// hour; negative means never.
	IdleTimeout time.Duration

	// MaxConns bounds the connections open through the connector at once,
	// whoever opened them; beyond it Dial fails with ErrTooManyConns. Zero
	// means 4096. The proxy's own bound on clients is ProxyConfig.MaxConns.
	MaxConns int

	// KeepMemory, if true, leaves memory to the Go runtime. By default,
	// once traffic stops after a burst (a bulk transfer leaves hundreds of
	// MiB of netstack garbage), the connector collects it and returns it
	// to the OS, so an idle sandbox's RSS falls back within seconds
	// instead of staying at its peak. See memtrim.go.
	KeepMemory bool

	// Logf receives tsnet's verbose backend logs. Nil discards them.
	Logf func(format string, args ...any)

	// UserLogf receives messages meant for people: progress, warnings.
	// Nil discards them.
	UserLogf func(format string, args ...any)
}

// Connector is a running tailnet node. Create one with Start.
type Connector struct {
	cfg        Config
	name       string
	controlURL string
	keyDesc    string
	dir        string
	srv        *tsnet.Server
	lc         *local.Client
	ns         *netstack.Impl
	view       viewHolder
	viewMu     sync.Mutex // serializes applyNetMap
	proxy      *socks.Server
	flows      *flows // the connection layer (flow.go)

	fwdMu     sync.Mutex
	forwards  []*Forward
	fwdClosed bool

	stopWatch context.CancelFunc
	watchDone chan struct{}
	stopTrim  func()      // releases the process's memory trimmer; nil when not trimming
	greeted   sync.Map    // key.NodePublic -> true: peers known to know this node (greet.go)
	conns     peerConns   // open connections by the peer carrying them (tunnels.go)
	runningAt time.Time   // when the node reached Running
	stopCtx   func() bool // detaches the Start context's cancel hook

	// joinAbandoned is set when Start was cancelled while joining: the
	// control plane may have registered the node already.
	joinAbandoned bool

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// Start joins the tailnet and returns when the node is running with tailnet
// addresses, or fails. ctx bounds both the start and the connector's
// lifetime: cancelling it after Start returns closes the connector.
func Start(ctx context.Context, cfg Config) (_ *Connector, reterr error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	c := &Connector{
		cfg:        cfg,
		flows:      newFlows(&cfg),
		name:       cfg.hostname(),
		controlURL: cfg.EffectiveControlURL(),
		closed:     make(chan struct{}),
	}
	src := cfg.KeySource
	c.keyDesc = src.Describe()

	readyCtx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()

	key, err := src.AuthKey(readyCtx)
	if err != nil {
		return nil, &StartError{Kind: KindKeySource, ControlURL: c.controlURL, Err: err,
			Hint: "set TS_AUTHKEY for the default key source, or set Config.KeySource (secrets.Vault, secrets.File)"}
	}
	if key.Kind() == secrets.KindTailscaleClient && len(cfg.Tags) == 0 {
		return nil, &StartError{Kind: KindKey, ControlURL: c.controlURL, Err: ErrClientSecretNeedsTags,
			Hint: "set Config.Tags to tags the OAuth client owns, or use an auth key (tskey-auth-…)"}
	}

	// No log upload, ever: both switches are process-wide, and tsnet reads
	// them when it starts.
	envknob.SetNoLogsNoSupport()
	logtail.Disable()

	// tsnet insists on a directory (log buffers, a netmap cache); it gets a
	// private one that Close removes. Those of killed processes go first.
	removeStaleDirs()
	c.dir, err = os.MkdirTemp("", privateDirPattern())
	if err != nil {
		return nil, fmt.Errorf("connector: creating private directory: %w", err)
	}
	defer func() {
		if reterr != nil {
			c.Close()
		}
	}()
	if err := blockProfileData(c.dir); err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}

	c.srv = &tsnet.Server{
		Dir:           c.dir,
		Store:         new(mem.Store),
		Hostname:      c.name,
		Ephemeral:     true,
		AuthKey:       key.Reveal(),
		ControlURL:    c.controlURL,
		AdvertiseTags: cfg.Tags,
		Logf:          cfg.Logf,
		UserLogf:      cfg.Logf, // tsnet's "user" lines are auth URLs and such; ours are better
	}
	if err := c.srv.Start(); err != nil {
		return nil, fmt.Errorf("connector: starting node: %w", err)
	}
	// tsnet has read the key (Start → resolveAuthKey → LocalBackend.Start):
	// drop its copy. One stays, out of reach: controlclient.Direct.authKey,
	// kept to register again after a logout or key expiry. Go strings
	// cannot be zeroed, so the bytes stay in the heap until collected.
	c.srv.AuthKey = ""
	emptyDir(c.dir)
	c.lc, err = c.srv.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	if c.ns, err = netstackOf(c.srv); err != nil {
		return nil, err
	}

	if err := c.awaitRunning(readyCtx); err != nil {
		if ctx.Err() != nil && readyCtx.Err() != context.DeadlineExceeded {
			c.joinAbandoned = true
			return nil, ctx.Err()
		}
		return nil, err
	}
	c.runningAt = time.Now()
	if !cfg.IgnoreSubnetRoutes {
		if _, err := c.lc.EditPrefs(readyCtx, &ipn.MaskedPrefs{RouteAllSet: true, Prefs: ipn.Prefs{RouteAll: true}}); err != nil {
			return nil, fmt.Errorf("connector: accepting subnet routes: %w", err)
		}
	}
	if err := c.startWatch(readyCtx); err != nil {
		return nil, err
	}
	c.hidePeerAPI()
	if cfg.Allow.Empty() {
		c.userLogf("warning: no allowlist: every destination the tailnet routes is reachable; the tailnet ACL is the only boundary")
	}
	if p, v := cfg.Policy, c.view.load(); p != nil && p.Tailnet != "" && v != nil && v.suffix != "" && p.Tailnet != v.suffix {
		c.userLogf("warning: the tests of policy %s expand short names with tailnet %s, but this tailnet is %s: what they tested is not what runs", p.File(), p.Tailnet, v.suffix)
	}
	if err := c.startProxy(); err != nil {
		return nil, err
	}
	if !cfg.KeepMemory {
		c.stopTrim = holdTrimmer()
	}
	// ctx may be cancelled already: the hook then runs at once, and must
	// not read c.stopCtx (teardown does) before it is set.
	set := make(chan struct{})
	c.stopCtx = context.AfterFunc(ctx, func() { <-set; c.Close() })
	close(set)
	return c, nil
}

// Close logs the node out, so that it leaves the control plane's machine
// list now, closes every listener and connection and removes the private
// directory. It is safe to call more than once and after a failed Start;
// later calls return the first call's result.
//
// Close returns within CloseTimeout whatever the load or the state of the
// control plane: logging out gets at most LogoutTimeout of it, the node's
// own shutdown what is left. Whatever has not finished by then goes on in
// the background, and the error says which step it was stuck in and how
// long each step took.
func (c *Connector) Close() error {
	c.closeOnce.Do(func() {
		deadline := time.Now().Add(CloseTimeout)
		tl := new(timeline)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.teardown(deadline, tl)
		}()
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			tl.fail(fmt.Errorf("not done within %v (%s); the rest goes on in the background", CloseTimeout, tl))
		}
		if err := tl.err(); err != nil {
			c.closeErr = fmt.Errorf("connector: close: %w", err)
		}
		c.logf("connector: closed: %s", tl)
		close(c.closed)
	})
	return c.closeErr
}

// teardown is Close's work, in order, each step and error recorded in tl,
// all of it against one deadline.
func (c *Connector) teardown(deadline time.Time, tl *timeline) {
	if c.stopCtx != nil {
		c.stopCtx()
	}
	if c.proxy != nil {
		// First, so no new tunnel opens while the node goes away.
		tl.step("proxy")
		c.proxy.Close()
	}
	// Then the forwards and every other connection, each writing its
	// audit record.
	tl.step("connections")
	c.closeForwards()
	c.flows.end(minTime(deadline, time.Now().Add(2*time.Second)))
	if c.lc != nil {
		// Logging out deletes an ephemeral node on the control plane
		// at once. Bounded: a dead control plane must not hold up
		// teardown; the ephemeral timeout then applies.
		tl.step("logout")
		ctx, cancel := context.WithDeadline(context.Background(), minTime(deadline, time.Now().Add(LogoutTimeout)))
		if c.joinAbandoned {
			c.settleJoin(ctx)
		}
		if err := c.lc.Logout(ctx); err != nil && c.ready() {
			tl.fail(fmt.Errorf("logging out: %w", err))
		}
		cancel()
	}
	if c.stopTrim != nil {
		c.stopTrim()
	}
	if c.stopWatch != nil {
		tl.step("watch")
		c.stopWatch()
		<-c.watchDone
	}
	if c.ns != nil {
		tl.step("addresses")
		dropAddresses(c.ns)
	}
	if c.srv != nil {
		// Removing the addresses does not stop TIME_WAIT endpoints that
		// hold a cached route from answering a peer's retransmission,
		// so tsnet's Close can still block (seen about once in ten runs
		// of TestCloseManyTunnelsControlDown). Close's deadline bounds
		// it; its goroutines are then left behind.
		tl.step("tsnet")
		if err := c.srv.Close(); err != nil {
			tl.fail(err)
		}
	}
	if c.dir != "" {
		tl.step("files")
		if err := os.RemoveAll(c.dir); err != nil {
			tl.fail(err)
		}
	}
	tl.step("")
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// timeline records how long each step of a teardown took, for Close's
// error and log line. It is written by the teardown and read by Close,
// which may give up waiting while a step is still running.
type timeline struct {
	mu    sync.Mutex
	t0    time.Time
	names []string
	ends  []time.Duration // ends[i]: when step i ended; one short while it runs
	errs  []error
}

func (tl *timeline) fail(err error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.errs = append(tl.errs, err)
}

func (tl *timeline) err() error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return errors.Join(tl.errs...)
}

// step ends the running step, if any, and starts the one named; "" starts
// none.
func (tl *timeline) step(name string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	now := time.Now()
	if tl.t0.IsZero() {
		tl.t0 = now
	}
	if len(tl.ends) < len(tl.names) {
		tl.ends = append(tl.ends, now.Sub(tl.t0))
	}
	if name != "" {
		tl.names = append(tl.names, name)
	}
}

// String lists the steps with their durations: "proxy 2ms, logout 31ms,
// tsnet 5.1s (still running)".
func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var parts []string
	var prev time.Duration
	for i, name := range tl.names {
		if i < len(tl.ends) {
			parts = append(parts, fmt.Sprintf("%s %v", name, (tl.ends[i]-prev).Round(time.Millisecond)))
			prev = tl.ends[i]
		} else {
			parts = append(parts, fmt.Sprintf("%s %v (still running)", name, (time.Since(tl.t0)-prev).Round(time.Millisecond)))
		}
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

// settleJoin waits, briefly, for a registration in flight to finish.
// LocalBackend.Logout is a no-op until the client has stored its node key,
// yet the control plane lists the node as soon as it registered it; without
// this wait a signal during the join would leave the node behind until the
// ephemeral timeout.
func (c *Connector) settleJoin(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	for ctx.Err() == nil {
		st, err := c.lc.StatusWithoutPeers(ctx)
		if err != nil {
			return
		}
		if st.BackendState == "Starting" || st.BackendState == "Running" {
			return // registered: the node key is stored, Logout will reach control
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Done is closed when the connector has been closed.
func (c *Connector) Done() <-chan struct{} { return c.closed }

// Name returns the node's name (its MagicDNS short name).
func (c *Connector) Name() string { return c.name }

// ready reports whether Start got as far as a running node.
func (c *Connector) ready() bool { return c.view.load() != nil }

// Status describes the node as the control plane's machine list would.
type Status struct {
	Name       string         `json:"name"`             // node name, e.g. tsconnect-3f2a…
	FQDN       string         `json:"fqdn"`             // MagicDNS name, no trailing dot
	Suffix     string         `json:"magicdns_suffix"`  // the tailnet's MagicDNS domain, "corp.ts.net"
	IPv4       netip.Addr     `json:"ipv4"`             // tailnet IPv4 address
	IPv6       netip.Addr     `json:"ipv6"`             // tailnet IPv6 address
	Tags       []string       `json:"tags"`             // ACL tags the control plane gave the node
	ControlURL string         `json:"control_url"`      // coordination server
	State      string         `json:"state"`            // backend state: Running, NeedsLogin, Stopped…
	Peers      int            `json:"peers"`            // peers in the network map
	Routes     []netip.Prefix `json:"routes,omitempty"` // subnet routes reachable through peers
	KeySource  string         `json:"key_source"`       // where the key came from (never the key)
	Ephemeral  bool           `json:"ephemeral"`        // always true
	Allowlist  string         `json:"allowlist"`        // the allowlist in force, "" for none
	Policy     string         `json:"policy,omitempty"` // the policy file it came from, if any
	Proxy      string         `json:"proxy,omitempty"`  // proxy listen address, "" for none
}

// Status reports the node's identity and state.
func (c *Connector) Status(ctx context.Context) (Status, error) {
	st := Status{Name: c.name, ControlURL: c.controlURL, KeySource: c.keyDesc, Ephemeral: true,
		Allowlist: c.cfg.Allow.String(), Proxy: c.ProxyAddr()}
	if p := c.cfg.Policy; p != nil {
		st.Policy = p.File()
	}
	select {
	case <-c.closed:
		st.State = "Closed"
		return st, nil
	default:
	}
	s, err := c.lc.StatusWithoutPeers(ctx)
	if err != nil {
		return st, fmt.Errorf("connector: status: %w", err)
	}
	st.State = s.BackendState
	if s.Self != nil {
		st.FQDN = strings.TrimSuffix(s.Self.DNSName, ".")
		if s.Self.Tags != nil {
			st.Tags = s.Self.Tags.AsSlice()
		}
	}
	if v := c.view.load(); v != nil {
		st.Suffix = v.suffix
		st.IPv4, st.IPv6 = v.self4, v.self6
		st.Peers = v.peers
		st.Routes = v.routeList()
	}
	return st, nil
}

func (cfg Config) hostname() string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	prefix := cfg.HostnamePrefix
	if prefix == "" {
		prefix = DefaultHostnamePrefix
	}
	return prefix + "-" + uuid.NewString()
}

// EffectiveControlURL is the coordination server Start will use: by the
// rule Config.ControlURL documents, without a trailing slash.
func (cfg Config) EffectiveControlURL() string {
	for _, v := range []string{cfg.ControlURL, os.Getenv("TS_CONTROL_URL"), os.Getenv("TAILSCALE_LOGIN_SERVER")} {
		if v != "" {
			return strings.TrimSuffix(v, "/")
		}
	}
	return DefaultControlURL
}

// ConfigError reports a Config that Start refuses, naming the field.
type ConfigError struct {
	Field string // "Tags", "IdleTimeout", …
	Err   error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("connector: Config.%s: %v", e.Field, e.Err) }
func (e *ConfigError) Unwrap() error { return e.Err }

// Validate reports, as a *ConfigError, what Start would refuse in cfg
// before it contacts anything.
func (cfg Config) Validate() error { return cfg.normalize() }

// normalize checks cfg and fills in every default, once, in Start: no nil
// function or zero bound reaches the connector's goroutines.
func (cfg *Config) normalize() error {
	for _, t := range cfg.Tags {
		if !strings.HasPrefix(t, "tag:") || len(t) == len("tag:") || strings.ContainsAny(t, " \t,") {
			return &ConfigError{"Tags", fmt.Errorf("%q is not a tag: tags look like tag:sandbox", t)}
		}
	}
	for name, d := range map[string]time.Duration{"ReadyTimeout": cfg.ReadyTimeout, "DialTimeout": cfg.DialTimeout} {
		if d < 0 {
			return &ConfigError{name, fmt.Errorf("negative (%v)", d)}
		}
	}
	if cfg.MaxConns < 0 {
		return &ConfigError{"MaxConns", fmt.Errorf("negative (%d)", cfg.MaxConns)}
	}
	if p := cfg.Policy; p != nil && cfg.Allow != p.List {
		if cfg.Allow != nil {
			return &ConfigError{"Policy", errors.New("set Policy or Allow, not both")}
		}
		if fails := p.Test(); len(fails) > 0 {
			return &ConfigError{"Policy", &dnsfilter.PolicyError{File: p.File(), Failures: fails, Tests: len(p.Tests)}}
		}
		cfg.Allow = p.List
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 15 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.KeySource == nil {
		cfg.KeySource = secrets.Env()
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.UserLogf == nil {
		cfg.UserLogf = func(string, ...any) {}
	}
	return nil
}

// hidePeerAPI shuts down the host socket that tsnet opens for the node's
// peer API on every interface (see internal/peerapi): the connector listens
// on the host only where its proxy and the caller's forwards do. Called
// once the node runs and after each network map change that moves the
// node's own addresses (the node then opens a new listener).
func (c *Connector) hidePeerAPI() {
	// Not a context the caller may cancel: see demonet's node.up on
	// LocalAPI requests cancelled just after their connection was made.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.lc.StatusWithoutPeers(ctx)
	if err != nil || st.Self == nil {
		return
	}
	if n, err := peerapi.ShutdownHost(st.Self.PeerAPIURL); err != nil {
		c.userLogf("warning: %v", err)
	} else if n > 0 {
		c.logf("connector: shut down the peer API's host listener (%v); peers still reach it through netstack", st.Self.PeerAPIURL)
	}
}

// logf writes to Config.Logf, the verbose log.
func (c *Connector) logf(format string, args ...any) { c.cfg.Logf(format, args...) }

// userLogf writes to Config.UserLogf, the messages for people.
func (c *Connector) userLogf(format string, args ...any) { c.cfg.UserLogf(format, args...) }
