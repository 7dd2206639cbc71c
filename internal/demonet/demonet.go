// Package demonet runs a complete, throwaway tailnet inside one process,
// for the `tsconnect demo` subcommand: no account, no internet, no root.
//
// It is NOT for production. The control plane is tailscale's in-process
// test control server (tstest/integration/testcontrol): everything lives
// in memory, there are no ACLs (every node may reach every other), nodes
// are never deleted, and an unexpected request can crash the process.
// Every user-visible string calls it the [ControlLabel].
//
// [Start] brings up, all on 127.0.0.1: the control plane (plain HTTP), a
// DERP relay (TLS with a pinned self-signed certificate) and a STUN
// server; then two service nodes (userspace tsnet nodes) that serve HTTP on
// the tailnet: "web" (tag:web) and "secret-db" (tag:db), the second one
// meant to be left out of a demo allowlist.
//
// # Loopback only
//
// The demo's nodes only ever send packets to loopback addresses, even on a
// laptop with Wi-Fi and a default route, or offline. Start makes
// process-wide settings for that ([ApplyKnobs]), so they also apply to a
// connector started later in the same process, which is what the demo
// wants; call Start before starting any other tailnet node in the process.
// The control plane also drops every non-loopback endpoint a node reports,
// so peers never learn one.
//
// One thing is outside its reach: on a cloud VM (AWS, Azure, some GCP
// machines) tailscale asks the instance metadata service at
// 169.254.169.254, and only the build tag ts_omit_cloud removes that code.
// Start refuses to run where it would happen, unless the binary was built
// with that tag.
package demonet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
)

// ControlLabel names the control plane in every message meant for people.
const ControlLabel = "demo control plane — not for production"

// Domain is the MagicDNS suffix of the demo tailnet: node "web" is
// "web.demo.test". ".test" is reserved (RFC 2606) and never resolves on the
// internet.
const Domain = "demo.test"

// Options configure [Start]. The zero value is fine.
type Options struct {
	// Logf receives verbose logs of the control plane, the DERP relay and
	// the service nodes. Nil discards them.
	Logf func(format string, args ...any)
}

// Net is a running demo tailnet. Create one with [Start].
type Net struct {
	ControlURL string   // http://127.0.0.1:port: the demo control plane
	Domain     string   // MagicDNS suffix: "demo.test"
	Web        *Service // "web" (tag:web): HTTP on port 80
	Other      *Service // "secret-db" (tag:db): HTTP on 80 and TCP on 5432; not for the allowlist

	logf     func(string, ...any)
	authKey  string
	control  *testcontrol.Server
	ctlSrv   *http.Server
	ctlConns *hijackTracker
	relay    *relay
	nodes    []*node

	mu      sync.Mutex
	streams map[key.NodePublic]int // live map polls per node: who is connected
	dropped int                    // non-loopback endpoints removed from map requests

	closeOnce sync.Once
}

// Service is a service node on the demo tailnet.
type Service struct {
	Name     string       // hostname and MagicDNS short name: "web"
	FQDN     string       // "web.demo.test"
	IP4      netip.Addr   // tailnet IPv4 address
	IP6      netip.Addr   // tailnet IPv6 address
	Tags     []string     // its tags: ["tag:web"] (the demo tailnet has no ACLs)
	Ports    []int        // TCP ports it accepts connections on
	Accepted func() int64 // connections accepted so far, on all ports
}

// Start brings up the demo tailnet and returns when the service nodes are
// running. ctx bounds the start only; stop the tailnet with [Net.Close].
// Start calls [ApplyKnobs] first.
func Start(ctx context.Context, opts Options) (_ *Net, reterr error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkCloud(); err != nil {
		return nil, err
	}
	ApplyKnobs()

	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	n := &Net{
		Domain:  Domain,
		logf:    logf,
		authKey: "demokey-" + randHex(16),
		streams: map[key.NodePublic]int{},
	}
	defer func() {
		if reterr != nil {
			n.Close()
		}
	}()

	var err error
	if n.relay, err = startRelay(logf); err != nil {
		return nil, err
	}
	if err := n.startControl(); err != nil {
		return nil, err
	}

	// Join both service nodes at once: each join takes about a second.
	specs := []serviceSpec{
		{name: "web", tags: []string{"tag:web"}, http: webHandler},
		{name: "secret-db", tags: []string{"tag:db"}, http: secretHandler, tcpPort: 5432, tcp: secretTCP},
	}
	type result struct {
		nd  *node
		err error
	}
	results := make([]result, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Go(func() {
			nd, err := startNode(ctx, n.ControlURL, n.authKey, sp, logf)
			results[i] = result{nd, err}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.nd != nil {
			n.nodes = append(n.nodes, r.nd)
		}
	}
	for _, r := range results {
		if r.err != nil {
			return nil, r.err
		}
	}
	n.Web, n.Other = n.nodes[0].svc, n.nodes[1].svc
	return n, nil
}

func (n *Net) startControl() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demonet: starting the %s: %w", ControlLabel, err)
	}
	n.ControlURL = "http://" + ln.Addr().String()
	n.control = &testcontrol.Server{
		DERPMap:        n.relay.derpMap,
		DNSConfig:      &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: Domain,
		RequireAuthKey: n.authKey,
		// One user owns every node, as in a small tailnet.
		AllNodesSameUser: true,
		// Peers marked online take the fast paths for new disco keys.
		AllOnline: true,
		// Non-nil, so nodes get the tags they ask for when they join
		// (testcontrol checks no ownership then); the entries only
		// matter for a later change of tags.
		TagOwners:       map[string][]string{"tag:web": nil, "tag:db": nil, "tag:sandbox": nil, "tag:demo": nil},
		ExplicitBaseURL: n.ControlURL,
		HoldMapRequest:  n.onMapRequest,
		Logf:            func(f string, a ...any) { n.logf("demo control: "+f, a...) },
	}
	n.ctlConns = newHijackTracker()
	n.ctlSrv = &http.Server{
		Handler:           n.controlHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         n.ctlConns.connState,
		ErrorLog:          stdLogger(n.logf, "demo control: "),
	}
	go n.ctlSrv.Serve(ln)
	return nil
}

// controlHandler passes the control protocol's own endpoints to testcontrol
// and answers everything else itself: testcontrol crashes the process on a
// request it does not know, such as a browser opening the control URL.
func (n *Net) controlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/key", "/ts2021", "/generate_204":
			n.control.ServeHTTP(w, r)
		case "/":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "tsconnect %s\nnodes: %s\n", ControlLabel, strings.Join(n.Nodes(), ", "))
		default:
			http.NotFound(w, r)
		}
	})
}

// onMapRequest sees every map request before testcontrol does. It removes
// endpoints that are not loopback addresses, so no peer ever learns one,
// and counts live map polls, which is how Nodes tells who is connected.
func (n *Net) onMapRequest(req *tailcfg.MapRequest) (done func()) {
	dropped := 0
	if !testHookNoGuards && len(req.Endpoints) > 0 {
		eps := make([]netip.AddrPort, 0, len(req.Endpoints))
		var types []tailcfg.EndpointType
		for i, ep := range req.Endpoints {
			if !ep.Addr().IsLoopback() {
				dropped++
				continue
			}
			eps = append(eps, ep)
			if i < len(req.EndpointTypes) {
				types = append(types, req.EndpointTypes[i])
			}
		}
		req.Endpoints = eps
		if req.EndpointTypes != nil {
			req.EndpointTypes = types
		}
	}
	if dropped > 0 {
		n.logf("demo control: dropped %d non-loopback endpoints of %s", dropped, req.NodeKey.ShortString())
	}
	k := req.NodeKey
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dropped += dropped
	if !req.Stream || req.ReadOnly {
		return nil
	}
	n.streams[k]++
	return func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.streams[k]--; n.streams[k] <= 0 {
			delete(n.streams, k)
		}
	}
}

// AuthKey returns the key that lets a node join the demo tailnet. Any
// number of nodes may use it; it is valid until Close.
func (n *Net) AuthKey() string { return n.authKey }

// Nodes returns the names of the nodes connected to the control plane,
// sorted.
//
// testcontrol never deletes a node: it ignores the expiry a logout sends,
// and keeps every node it has seen in its peer lists. Nodes therefore lists
// the nodes that hold a map session, which is what Tailscale's deletion of
// an ephemeral node looks like from outside: a connector is gone from the
// list as soon as it has logged out and closed.
func (n *Net) Nodes() []string {
	if n.control == nil {
		return nil
	}
	n.mu.Lock()
	live := make(map[key.NodePublic]bool, len(n.streams))
	for k := range n.streams {
		live[k] = true
	}
	n.mu.Unlock()
	var names []string
	for _, nd := range n.control.AllNodes() {
		if !live[nd.Key] {
			continue
		}
		name := nd.Hostinfo.Hostname()
		if name == "" {
			name, _, _ = strings.Cut(nd.Name, ".")
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// droppedEndpoints reports how many non-loopback endpoints the control
// plane has removed from map requests.
func (n *Net) droppedEndpoints() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dropped
}

// Close stops the service nodes, the control plane, the DERP relay and
// the STUN server, and removes the nodes' temporary directories. It is safe
// after a failed Start; a second call returns net.ErrClosed.
func (n *Net) Close() error {
	err := net.ErrClosed
	n.closeOnce.Do(func() {
		err = n.close()
	})
	return err
}

func (n *Net) close() error {
	var errs []error
	var wg sync.WaitGroup
	nodeErrs := make([]error, len(n.nodes))
	for i, nd := range n.nodes {
		wg.Go(func() { nodeErrs[i] = nd.close() })
	}
	wg.Wait()
	errs = append(errs, nodeErrs...)
	if n.ctlSrv != nil {
		// Close does not end hijacked connections, and testcontrol
		// hijacks every node's control connection; end those too, or a
		// node still running elsewhere in the process keeps them open.
		if err := n.ctlSrv.Close(); err != nil {
			errs = append(errs, err)
		}
		n.ctlConns.closeAll()
	}
	if n.relay != nil {
		if err := n.relay.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("demonet: close: %w", err)
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
