package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tsconnect/tsconnect/dnsfilter"
)

// forwardSpec is one --forward LOCAL=REMOTE.
type forwardSpec struct {
	spec   string // as given
	local  string // loopback host:port to listen on
	remote string // host:port to dial through the tailnet
	host   string // remote host
	port   uint16 // remote port
}

// parseForward parses LOCAL=REMOTE. LOCAL is a loopback host:port or just
// a port (meaning 127.0.0.1:port). A forward has no authentication, so,
// like the proxy without credentials, it listens on loopback only.
func parseForward(s string) (forwardSpec, error) {
	s = strings.TrimSpace(s)
	local, remote, ok := strings.Cut(s, "=")
	if !ok || local == "" || remote == "" {
		return forwardSpec{}, errors.New("want LOCAL=REMOTE, e.g. 127.0.0.1:5432=db:5432 or 5432=db:5432")
	}
	f := forwardSpec{spec: s, remote: remote}
	if _, err := strconv.ParseUint(local, 10, 16); err == nil {
		local = net.JoinHostPort("127.0.0.1", local)
	}
	lh, lp, err := net.SplitHostPort(local)
	if err != nil {
		return f, fmt.Errorf("LOCAL %q: want host:port or a port", local)
	}
	if _, err := strconv.ParseUint(lp, 10, 16); err != nil {
		return f, fmt.Errorf("LOCAL %q: bad port", local)
	}
	switch ip, err := netip.ParseAddr(lh); {
	case lh == "localhost":
		lh = "127.0.0.1"
	case err != nil || !ip.IsLoopback():
		return f, fmt.Errorf("LOCAL %q is not a loopback address: a forward has no authentication, so it listens on 127.0.0.1 or [::1] only", local)
	}
	f.local = net.JoinHostPort(lh, lp)

	host, rp, err := net.SplitHostPort(remote)
	if err != nil || host == "" {
		return f, fmt.Errorf("REMOTE %q: want host:port, e.g. db:5432", remote)
	}
	port, err := strconv.ParseUint(rp, 10, 16)
	if err != nil || port == 0 {
		return f, fmt.Errorf("REMOTE %q: bad port", remote)
	}
	f.host, f.port = host, uint16(port)
	return f, nil
}

// absolute reports whether host can be checked against the allowlist
// before joining: an IP address or a name with a dot. Short names need the
// tailnet's MagicDNS suffix, known only after joining.
func absolute(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return strings.Contains(strings.TrimSuffix(host, "."), ".")
}

// precheckForwards rejects, before joining, forwards to absolute names or
// addresses the allowlist denies: no node is created for a command line
// that cannot work.
func precheckForwards(allow *dnsfilter.List, fwds []forwardSpec) error {
	for _, f := range fwds {
		if absolute(f.host) {
			if err := allow.Check(f.host, f.port).Err(f.host, f.port); err != nil {
				return forwardDenied(f, err)
			}
		}
	}
	return nil
}

func forwardDenied(f forwardSpec, err error) error {
	return &exitError{code: exitUsage,
		err:  fmt.Errorf("--forward %s: %s is not allowed: %s", f.spec, f.remote, message(err)),
		hint: "add " + f.host + " (with port " + strconv.Itoa(int(f.port)) + ") to --allow, or drop the --forward"}
}

// forwarder runs the local listeners of every --forward.
type forwarder struct {
	s     *session
	ctx   context.Context
	stop  context.CancelFunc
	fwds  []*forward
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// forward is one listener and its counters.
type forward struct {
	spec forwardSpec
	ln   net.Listener

	accepted, active, failed atomic.Int64
	bytesUp, bytesDown       atomic.Int64
}

// forwardStatus is a forward as `status` reports it.
type forwardStatus struct {
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Accepted  int64  `json:"accepted"`
	Active    int64  `json:"active"`
	Failed    int64  `json:"failed"`
	BytesUp   int64  `json:"bytes_up"`
	BytesDown int64  `json:"bytes_down"`
}

// listenForwards binds every forward's local address. It runs before
// joining, so a port in use fails before a node is created.
func listenForwards(specs []forwardSpec) ([]*forward, error) {
	var fwds []*forward
	for _, f := range specs {
		ln, err := net.Listen("tcp", f.local)
		if err != nil {
			closeForwards(fwds)
			return nil, &exitError{code: exitFailure, err: fmt.Errorf("--forward %s: %w", f.spec, err),
				hint: "choose another local port, or port 0 to let the system pick one"}
		}
		fwds = append(fwds, &forward{spec: f, ln: ln})
	}
	return fwds, nil
}

// closeForwards closes listeners that never started serving.
func closeForwards(fwds []*forward) {
	for _, f := range fwds {
		f.ln.Close()
	}
}

// startForwards checks each forward against the allowlist, now that short
// names can be expanded, then serves the listeners. Every connection is
// dialed with the connector's Dial, so the allowlist applies to each as
// well. Closing the session's connector ends them all. The forwarder owns
// the listeners, even on error.
func startForwards(s *session, fwds []*forward) (*forwarder, error) {
	ctx, stop := context.WithCancel(context.Background())
	fw := &forwarder{s: s, ctx: ctx, stop: stop, fwds: fwds, conns: map[net.Conn]struct{}{}}
	for _, f := range fwds {
		if err := s.policy(f.spec.host, f.spec.port).Err(f.spec.host, f.spec.port); err != nil {
			fw.Close()
			return nil, forwardDenied(f.spec, err)
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if _, err := s.c.Resolve(rctx, dnsfilter.Expand(f.spec.host, s.suffix)); err != nil {
			s.sio.logf("warning: --forward %s: %s does not resolve on the tailnet (yet): %s", f.spec.spec, f.spec.host, message(err))
		}
		cancel()
	}
	for _, f := range fw.fwds {
		s.sio.logf("forward %s -> %s", f.ln.Addr(), f.spec.remote)
		fw.wg.Add(1)
		go fw.serve(f)
	}
	// The connector closing (on purpose or not) ends the forwards.
	go func() {
		select {
		case <-s.c.Done():
			fw.Close()
		case <-ctx.Done():
		}
	}()
	return fw, nil
}

func (fw *forwarder) serve(f *forward) {
	defer fw.wg.Done()
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		if !fw.track(conn) {
			conn.Close()
			return
		}
		f.accepted.Add(1)
		f.active.Add(1)
		fw.wg.Add(1)
		go func() {
			defer fw.wg.Done()
			defer f.active.Add(-1)
			defer fw.untrack(conn)
			remote, err := fw.s.c.Dial(fw.ctx, "tcp", f.spec.remote)
			if err != nil {
				f.failed.Add(1)
				conn.Close()
				if fw.ctx.Err() == nil {
					fw.s.sio.logf("forward %s -> %s: %s", f.ln.Addr(), f.spec.remote, message(err))
				}
				return
			}
			if !fw.track(remote) {
				remote.Close()
				conn.Close()
				return
			}
			defer fw.untrack(remote)
			up, down := splice(conn, remote)
			f.bytesUp.Add(up)
			f.bytesDown.Add(down)
		}()
	}
}

// track records an open connection so Close can end it; false means the
// forwarder is closing.
func (fw *forwarder) track(c net.Conn) bool {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.done {
		return false
	}
	fw.conns[c] = struct{}{}
	return true
}

func (fw *forwarder) untrack(c net.Conn) {
	fw.mu.Lock()
	delete(fw.conns, c)
	fw.mu.Unlock()
}

// Close stops the listeners, ends every forwarded connection and waits for
// them. It is safe to call more than once.
func (fw *forwarder) Close() {
	fw.mu.Lock()
	if fw.done {
		fw.mu.Unlock()
		return
	}
	fw.done = true
	fw.stop()
	for _, f := range fw.fwds {
		f.ln.Close()
	}
	for c := range fw.conns {
		c.Close()
	}
	fw.mu.Unlock()
	fw.wg.Wait()
}

func (fw *forwarder) status() []forwardStatus {
	if fw == nil {
		return nil
	}
	out := []forwardStatus{}
	for _, f := range fw.fwds {
		out = append(out, forwardStatus{
			Local: f.ln.Addr().String(), Remote: f.spec.remote,
			Accepted: f.accepted.Load(), Active: f.active.Load(), Failed: f.failed.Load(),
			BytesUp: f.bytesUp.Load(), BytesDown: f.bytesDown.Load(),
		})
	}
	return out
}

// splice copies both ways until both directions are done. When one side
// finishes sending, the other side's write half is closed, so protocols
// that half-close (a client sending EOF and then reading the answer) work;
// an error in either direction ends both.
func splice(local, remote net.Conn) (up, down int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		up = pipe(remote, local)
	}()
	down = pipe(local, remote)
	wg.Wait()
	local.Close()
	remote.Close()
	return up, down
}

// pipe copies src to dst, then half-closes dst, or closes both on error.
func pipe(dst, src net.Conn) int64 {
	n, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		cw.CloseWrite()
	} else {
		dst.Close()
		src.Close()
	}
	return n
}
