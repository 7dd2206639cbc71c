// Package auditq hands audit records to a consumer on a goroutine of its
// own, so that a slow consumer (a full disk, a stuck pipe) delays only the
// log, never the connections being logged.
package auditq

import (
	"sync"
	"sync/atomic"
	"time"
)

// Size is how many records may wait; beyond it, records are dropped.
const Size = 1024

// Queue is a bounded queue drained by one goroutine calling its consumer.
type Queue[T any] struct {
	fn      func(T)
	ch      chan T
	done    chan struct{}
	dropped atomic.Int64

	mu     sync.Mutex // guards closed and sends on ch
	closed bool
}

// New starts a queue whose records fn receives, one at a time, in order.
func New[T any](fn func(T)) *Queue[T] {
	q := &Queue[T]{fn: fn, ch: make(chan T, Size), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *Queue[T]) run() {
	defer close(q.done)
	for v := range q.ch {
		q.fn(v)
	}
}

// Put queues v, or drops and counts it when the queue is full or closed.
// It never blocks.
func (q *Queue[T]) Put(v T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.dropped.Add(1)
		return
	}
	select {
	case q.ch <- v:
	default:
		q.dropped.Add(1)
	}
}

// Dropped reports how many records were dropped.
func (q *Queue[T]) Dropped() int64 {
	if q == nil {
		return 0
	}
	return q.dropped.Load()
}

// Close stops accepting records and waits, at most wait, for the queued
// ones to be consumed. Calling it again only waits.
func (q *Queue[T]) Close(wait time.Duration) {
	if q == nil {
		return
	}
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-q.done:
	case <-t.C:
	}
}
