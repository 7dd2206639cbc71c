package main

import (
	"context"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/secrets"
)

// notifySignals returns a channel receiving SIGINT and SIGTERM, with room
// for two: the first starts an orderly shutdown, the second cuts it short.
func notifySignals() (<-chan os.Signal, func()) {
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	return sigc, func() { signal.Stop(sigc) }
}

// signalExit is the conventional exit status after signal sig: 128+N.
func signalExit(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitFailure
}

// session is a joined node.
type session struct {
	c       *connector.Connector
	st      connector.Status
	sio     stdio
	verbose bool
	cancel  context.CancelFunc

	abandoned bool // a second signal cut close short
}

// join starts the node, printing progress. When it returns no session,
// the caller exits with code: the join failed (reported on stderr), or a
// signal abandoned it (nothing is left behind; 128+N).
func join(ctx context.Context, cfg connector.Config, verbose bool, sigc <-chan os.Signal, sio stdio) (*session, int) {
	s, sig, err := joinSession(ctx, cfg, verbose, sigc, sio)
	switch {
	case err != nil:
		return nil, sio.fail(err)
	case sig != nil:
		return nil, signalExit(sig)
	}
	return s, exitOK
}

func joinSession(ctx context.Context, cfg connector.Config, verbose bool, sigc <-chan os.Signal, sio stdio) (*session, os.Signal, error) {
	// tailscale's tlsdial and a few others warn through the standard
	// logger; that is noise unless asked for.
	if verbose {
		log.SetOutput(sio.Err)
	} else {
		log.SetOutput(io.Discard)
	}
	src := cfg.KeySource
	if src == nil {
		src = secrets.Env()
	}
	sio.logf("joining tailnet via %s (key from %s)", cfg.EffectiveControlURL(), src.Describe())
	t0 := time.Now()

	// The context bounds the connector's whole life, not only Start.
	lifeCtx, cancel := context.WithCancel(ctx)
	type result struct {
		c   *connector.Connector
		err error
	}
	resc := make(chan result, 1)
	go func() {
		c, err := connector.Start(lifeCtx, cfg)
		resc <- result{c, err}
	}()
	var r result
	select {
	case r = <-resc:
	case sig := <-sigc:
		sio.logf("%v: giving up joining", sig)
		cancel()
		select {
		case r = <-resc:
			if r.c != nil {
				r.c.Close()
			}
		case <-sigc: // a second signal: do not wait for the cleanup
		}
		return nil, sig, nil
	}
	if r.err != nil {
		cancel()
		return nil, nil, r.err
	}
	s := &session{c: r.c, sio: sio, verbose: verbose, cancel: cancel}
	st, err := r.c.Status(lifeCtx)
	if err != nil {
		s.close(nil)
		return nil, nil, err
	}
	s.st = st
	ready := "ready in " + time.Since(t0).Round(100*time.Millisecond).String() + " as " + st.Name + " " + addrString(st.IPv4, st.IPv6)
	if p := r.c.ProxyAddr(); p != "" {
		ready += " (proxy " + p + ")"
	}
	sio.logf("%s", ready)
	return s, nil, nil
}

func addrString(addrs ...netip.Addr) string {
	var s []string
	for _, a := range addrs {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	return strings.Join(s, " ")
}

// close leaves the tailnet (the connector logs out, so the node leaves the
// machine list now). A signal on sigc while that is slow abandons the wait
// and is returned.
func (s *session) close(sigc <-chan os.Signal) os.Signal {
	t0 := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.c.Close(); err != nil {
			s.sio.logf("warning: %s (the control plane removes the ephemeral node once it notices it is gone)", message(err))
		}
	}()
	select {
	case <-done:
		s.cancel()
		if s.verbose {
			s.sio.logf("left the tailnet in %v", time.Since(t0).Round(time.Millisecond))
		}
		return nil
	case sig := <-sigc:
		s.sio.logf("%v again: exiting without waiting to leave the tailnet", sig)
		s.abandoned = true
		return sig
	}
}

// closeOnPanic is deferred right after joining, so that the node leaves
// the tailnet even if tsconnect panics. It does nothing after close (Close
// is idempotent) or after a second signal abandoned the wait, which it
// must not resume.
// proxyPort is the proxy's port, 0 if there is none.
func (s *session) proxyPort() int {
	_, p, _ := net.SplitHostPort(s.c.ProxyAddr())
	n, _ := strconv.Atoi(p)
	return n
}

func (s *session) closeOnPanic() {
	if !s.abandoned {
		s.c.Close()
	}
}

// lookCommand finds the command to run before joining: a typo should not
// cost a node.
func lookCommand(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", &exitError{code: exitNotFound, err: err, hint: "check the command name and PATH"}
	}
	return path, nil
}
