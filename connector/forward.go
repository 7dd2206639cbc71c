package connector

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tsconnect/tsconnect/socks"
)

// Forward is a local port forward started by Connector.Forward.
type Forward struct {
	c      *Connector
	ln     net.Listener
	remote string
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	local  map[net.Conn]struct{} // accepted connections, closed by Close
	closed bool

	accepted, active, failed atomic.Int64
	bytesUp, bytesDown       atomic.Int64
}

// ForwardStats are a forward's counters.
type ForwardStats struct {
	Accepted  int64 // connections accepted
	Active    int64 // being forwarded now
	Failed    int64 // accepted but not forwarded: denied, unreachable
	BytesUp   int64 // local client to remote
	BytesDown int64 // remote to local client
}

// Forward serves a port forward for clients that cannot use a proxy
// (psql, JDBC drivers): every connection accepted on ln is dialed to
// remote ("host:port", as Dial takes it) through the connection layer —
// allowlist, audit (protocol "forward", client the local peer), Stats,
// Config.IdleTimeout and MaxConns — and spliced to it, half-closes passed
// on. A connection that cannot be dialed is closed, and the reason goes to
// Config.UserLogf. The forward owns ln and runs until its Close, or the
// connector's.
func (c *Connector) Forward(ln net.Listener, remote string) *Forward {
	ctx, stop := context.WithCancel(context.Background())
	f := &Forward{c: c, ln: ln, remote: remote, ctx: ctx, stop: stop, local: map[net.Conn]struct{}{}}
	c.fwdMu.Lock()
	if c.fwdClosed {
		c.fwdMu.Unlock()
		f.Close()
		return f
	}
	c.forwards = append(c.forwards, f)
	c.fwdMu.Unlock()
	f.wg.Add(1)
	go f.serve()
	return f
}

// Addr is the local address the forward listens on.
func (f *Forward) Addr() net.Addr { return f.ln.Addr() }

// Remote is the destination, as given to Connector.Forward.
func (f *Forward) Remote() string { return f.remote }

// Stats returns a snapshot of the forward's counters.
func (f *Forward) Stats() ForwardStats {
	return ForwardStats{
		Accepted: f.accepted.Load(), Active: f.active.Load(), Failed: f.failed.Load(),
		BytesUp: f.bytesUp.Load(), BytesDown: f.bytesDown.Load(),
	}
}

// Close stops the listener, ends every forwarded connection and waits for
// them. It is safe to call more than once.
func (f *Forward) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.wg.Wait()
		return nil
	}
	f.closed = true
	f.stop()
	err := f.ln.Close()
	for conn := range f.local {
		conn.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.c.fwdMu.Lock()
	f.c.forwards = slices.DeleteFunc(f.c.forwards, func(g *Forward) bool { return g == f })
	f.c.fwdMu.Unlock()
	return err
}

func (f *Forward) serve() {
	defer f.wg.Done()
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			conn.Close()
			return
		}
		f.local[conn] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		f.accepted.Add(1)
		go f.forward(conn)
	}
}

func (f *Forward) forward(local net.Conn) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.local, local)
		f.mu.Unlock()
		local.Close()
	}()
	f.active.Add(1)
	defer f.active.Add(-1)
	remote, err := f.c.dialFlow(f.ctx, origin{protocol: ProtocolForward, client: local.RemoteAddr().String()}, "tcp", f.remote)
	if err != nil {
		f.failed.Add(1)
		if f.ctx.Err() == nil {
			f.c.userLogf("forward %s -> %s: %v", f.ln.Addr(), f.remote, err)
		}
		return
	}
	up, down, _ := socks.Splice(local, remote) // the flow's audit record has the error
	f.bytesUp.Add(up)
	f.bytesDown.Add(down)
}

// closeForwards closes the connector's forwards; none start afterwards.
func (c *Connector) closeForwards() {
	c.fwdMu.Lock()
	c.fwdClosed = true
	fwds := slices.Clone(c.forwards) // each Close removes itself from c.forwards
	c.fwdMu.Unlock()
	for _, f := range fwds {
		f.Close()
	}
}
