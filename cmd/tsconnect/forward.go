package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tsconnect/tsconnect/connector"
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

	host, port, err := splitHostPort(remote)
	switch {
	case err == errNoHostPort:
		return f, fmt.Errorf("REMOTE %q: want host:port, e.g. db:5432", remote)
	case err != nil:
		return f, fmt.Errorf("REMOTE %q: bad port", remote)
	}
	f.host, f.port = host, port
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

// forwarder is the running --forward listeners.
type forwarder struct {
	fwds []*connector.Forward
}

// forward is one bound --forward listener, not yet serving.
type forward struct {
	spec forwardSpec
	ln   net.Listener
}

// port is the local port the forward listens on.
func (f *forward) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

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
// names can be expanded, then serves the listeners through the connector
// (connector.Forward: audited, counted, idle-timed-out, the allowlist
// applied to every connection), which ends them when it closes. The
// connector owns the listeners once this returns, even on error.
func startForwards(s *session, fwds []*forward) (*forwarder, error) {
	for _, f := range fwds {
		if err := s.c.Check(f.spec.host, f.spec.port).Err(f.spec.host, f.spec.port); err != nil {
			closeForwards(fwds)
			return nil, forwardDenied(f.spec, err)
		}
		rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if _, err := s.c.Resolve(rctx, f.spec.host); err != nil {
			s.sio.logf("warning: --forward %s: %s does not resolve on the tailnet (yet): %s", f.spec.spec, f.spec.host, message(err))
		}
		cancel()
	}
	fw := &forwarder{}
	for _, f := range fwds {
		s.sio.logf("forward %s -> %s", f.ln.Addr(), f.spec.remote)
		fw.fwds = append(fw.fwds, s.c.Forward(f.ln, f.spec.remote))
	}
	return fw, nil
}

// Close stops the listeners and ends every forwarded connection.
func (fw *forwarder) Close() {
	for _, f := range fw.fwds {
		f.Close()
	}
}

func (fw *forwarder) status() []forwardStatus {
	if fw == nil {
		return nil
	}
	out := []forwardStatus{}
	for _, f := range fw.fwds {
		st := f.Stats()
		out = append(out, forwardStatus{
			Local: f.Addr().String(), Remote: f.Remote(),
			Accepted: st.Accepted, Active: st.Active, Failed: st.Failed,
			BytesUp: st.BytesUp, BytesDown: st.BytesDown,
		})
	}
	return out
}
