package auditq

import (
	"testing"
	"time"
)

// TestQueue: records arrive in order; a stuck consumer costs drops, never
// a blocked Put; Close waits for the consumer at most as long as told.
func TestQueue(t *testing.T) {
	got := make(chan int, Size)
	q := New(func(v int) { got <- v })
	for i := range 10 {
		q.Put(i)
	}
	q.Close(time.Second)
	for i := range 10 {
		if v := <-got; v != i {
			t.Fatalf("record %d arrived as %d", i, v)
		}
	}
	q.Put(99) // after Close: dropped, not a panic
	if q.Dropped() != 1 {
		t.Errorf("Dropped = %d after a Put on a closed queue, want 1", q.Dropped())
	}

	release := make(chan struct{})
	stuck := New(func(int) { <-release })
	t0 := time.Now()
	for i := range 2 * Size {
		stuck.Put(i)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("%d Puts to a stuck consumer took %v", 2*Size, d)
	}
	if n := stuck.Dropped(); n < Size-1 {
		t.Errorf("Dropped = %d with a stuck consumer, want about %d", n, Size)
	}
	t0 = time.Now()
	stuck.Close(100 * time.Millisecond)
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Close waited %v for a stuck consumer, told 100ms", d)
	}
	close(release)
	var nilQ *Queue[int]
	if nilQ.Dropped() != 0 {
		t.Error("a nil queue dropped records")
	}
	nilQ.Close(time.Millisecond)
}
