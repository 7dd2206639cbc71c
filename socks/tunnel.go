package socks

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// bufPool holds the 32 KiB copy buffers of tunnels, one per direction.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// tunnel is a spliced client/target pair.
type tunnel struct {
	client, target net.Conn
	start          time.Time
	last           atomic.Int64 // time of the last bytes read, as nanoseconds since start
	idle           time.Duration

	mu        sync.Mutex // guards timer and done
	timer     *time.Timer
	done      bool
	idleFired atomic.Bool
}

// splice copies between client and target in both directions, half-closing
// each side as the other reaches EOF, until both directions end, the tunnel
// is idle for IdleTimeout, or Close closes the connections. pending is sent
// to target first: bytes the client sent before the tunnel started. Bytes
// are counted in rec and Stats as they flow.
func (s *Server) splice(client net.Conn, pending []byte, target net.Conn, rec *record) {
	t := &tunnel{client: client, target: target, start: time.Now(), idle: s.cfg.IdleTimeout}
	if rec.req != nil && rec.req.audited.Load() {
		t.idle = 0 // the Dial layer's to enforce
	}
	if len(pending) > 0 {
		n, err := target.Write(pending)
		rec.BytesUp += int64(n)
		s.st.bytesUp.Add(int64(n))
		if err != nil {
			rec.setError(err)
			return
		}
	}
	if t.idle > 0 {
		t.mu.Lock()
		t.timer = time.AfterFunc(t.idle, t.checkIdle)
		t.mu.Unlock()
	}

	type result struct {
		n   int64
		err error
	}
	down := make(chan result, 1)
	go func() {
		n, err := t.copy(client, target, &s.st.bytesDown)
		down <- result{n, err}
	}()
	up, upErr := t.copy(target, client, &s.st.bytesUp)
	d := <-down

	t.mu.Lock()
	t.done = true
	if t.timer != nil {
		t.timer.Stop()
	}
	t.mu.Unlock()
	client.Close()
	target.Close()

	rec.BytesUp += up
	rec.BytesDown += d.n
	switch {
	case t.idleFired.Load():
		rec.setError(fmt.Errorf("closed after %v idle (Config.IdleTimeout)", t.idle))
	case s.ctx.Err() != nil:
		rec.setError(errServerClosed)
	default:
		for _, err := range []error{upErr, d.err} {
			if err != nil && !errors.Is(err, net.ErrClosed) {
				rec.setError(err)
			}
		}
	}
}

// copy copies src to dst through a pooled buffer. On EOF it half-closes dst
// (if it can) so the other direction keeps flowing; on any error it closes
// both connections so the other direction ends too.
func (t *tunnel) copy(dst, src net.Conn, total *atomic.Int64) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	// The wrappers hide ReaderFrom/WriterTo: those would allocate their own
	// buffers (for a non-TCP peer) and bypass the metering.
	n, err := io.CopyBuffer(writerOnly{dst}, &meteredReader{r: src, t: t, total: total}, *bp)
	if err == nil {
		// Without half-close support, leave dst open: the other direction
		// may still be delivering a response. It ends on its own EOF, on an
		// error, or at IdleTimeout.
		closeWrite(dst)
		return n, nil
	}
	t.client.Close()
	t.target.Close()
	return n, err
}

// checkIdle runs on the idle timer: it closes the tunnel if nothing was read
// either way for t.idle, or re-arms the timer for the remaining time.
func (t *tunnel) checkIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	quiet := time.Since(t.start) - time.Duration(t.last.Load())
	if quiet >= t.idle {
		t.idleFired.Store(true)
		t.client.Close()
		t.target.Close()
		return
	}
	t.timer.Reset(t.idle - quiet)
}

// meteredReader counts bytes and notes activity for the idle timer: one
// atomic add and one clock read per Read (of up to 32 KiB), nothing per byte.
type meteredReader struct {
	r     io.Reader
	t     *tunnel
	total *atomic.Int64
}

func (m *meteredReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if n > 0 {
		m.t.last.Store(int64(time.Since(m.t.start)))
		m.total.Add(int64(n))
	}
	return n, err
}

type writerOnly struct{ io.Writer }
