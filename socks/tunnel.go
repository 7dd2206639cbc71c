package socks

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// bufPool holds the 32 KiB copy buffers of tunnels, one per direction.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// splice copies between client and target in both directions, half-closing
// each side as the other reaches EOF, until both directions end or Close
// closes the connections. pending is sent to target first: bytes the client
// sent before the tunnel started. Bytes are counted in rec and Stats as they
// flow. A tunnel that carries nothing is not timed out here: that is the Dial
// layer's to do (the connector closes a connection idle for its
// Config.IdleTimeout), as it alone sees every connection.
func (s *Server) splice(client net.Conn, pending []byte, target net.Conn, rec *record) {
	if len(pending) > 0 {
		n, err := target.Write(pending)
		rec.BytesUp += int64(n)
		s.st.bytesUp.Add(int64(n))
		if err != nil {
			rec.setError(err)
			return
		}
	}
	up, down, err := spliceCounted(client, target, &s.st.bytesUp, &s.st.bytesDown)
	rec.BytesUp += up
	rec.BytesDown += down
	if s.ctx.Err() != nil {
		rec.setError(errServerClosed)
		return
	}
	rec.setError(err)
}

// Splice copies between a and b in both directions through pooled
// buffers, half-closing each side as the other reaches EOF (so a client
// that sends EOF and then reads the answer works), until both directions
// end; an error in either ends both. It closes both connections and
// returns the bytes copied from a to b and from b to a, and the first
// error other than a closed connection. The proxy's tunnels and the
// connector's forwards are spliced with it.
func Splice(a, b net.Conn) (ab, ba int64, err error) { return spliceCounted(a, b, nil, nil) }

// spliceCounted is Splice that also adds the bytes to the totals, if not
// nil, as they flow.
func spliceCounted(a, b net.Conn, abTotal, baTotal *atomic.Int64) (ab, ba int64, err error) {
	type result struct {
		n   int64
		err error
	}
	back := make(chan result, 1)
	go func() {
		n, err := copyHalf(a, b, baTotal)
		back <- result{n, err}
	}()
	ab, abErr := copyHalf(b, a, abTotal)
	r := <-back
	a.Close()
	b.Close()
	for _, e := range []error{abErr, r.err} {
		if e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
			err = e
		}
	}
	return ab, r.n, err
}

// copyHalf copies src to dst through a pooled buffer, counting the bytes in
// total (if not nil). On EOF it half-closes dst (if it can) so the other direction keeps
// flowing; on any error it closes both connections so the other direction
// ends too.
func copyHalf(dst, src net.Conn, total *atomic.Int64) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	// The wrappers hide ReaderFrom/WriterTo: those would allocate their own
	// buffers (for a non-TCP peer) and bypass the metering.
	n, err := io.CopyBuffer(writerOnly{dst}, &meteredReader{r: src, total: total}, *bp)
	if err == nil {
		// Without half-close support, leave dst open: the other direction
		// may still be delivering a response. It ends on its own EOF or an
		// error.
		closeWrite(dst)
		return n, nil
	}
	dst.Close()
	src.Close()
	return n, err
}

// meteredReader counts bytes: one atomic add per Read (of up to 32 KiB),
// nothing per byte.
type meteredReader struct {
	r     io.Reader
	total *atomic.Int64
}

func (m *meteredReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if n > 0 && m.total != nil {
		m.total.Add(int64(n))
	}
	return n, err
}

type writerOnly struct{ io.Writer }
