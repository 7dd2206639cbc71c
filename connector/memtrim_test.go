package connector

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

var (
	sink     [][]byte
	testPool sync.Pool
)

// heldBytes is the memory the runtime holds from the OS.
func heldBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// TestTrimLoop: after a burst of allocation stops, the trimmer returns the
// garbage to the OS within a few intervals; with nothing to trim, it
// does not collect again and again.
func TestTrimLoop(t *testing.T) {
	defer func(d time.Duration) { trimEvery = d }(trimEvery)
	trimEvery = 200 * time.Millisecond
	runtime.GC()
	base := heldBytes()

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { trimLoop(stop); close(done) }()
	defer func() { close(stop); <-done }()

	// A burst like a bulk transfer's: 256 MiB of short-lived buffers,
	// with a GC-visible peak, and 64 MiB left parked in a sync.Pool, as
	// wireguard-go and gVisor leave theirs.
	for i := 0; i < 256; i++ {
		sink = append(sink, make([]byte, 1<<20))
		if len(sink) == 64 {
			for _, b := range sink {
				testPool.Put(&b)
			}
			sink = nil
		}
	}
	sink = nil
	peak := heldBytes()
	if peak < base+64<<20 {
		t.Skipf("the burst raised held memory only from %d to %d MiB; nothing to measure", base>>20, peak>>20)
	}
	deadline := time.Now().Add(5 * time.Second)
	for heldBytes() > base+32<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("held memory %d MiB 5s after the burst (base %d, peak %d): not trimmed", heldBytes()>>20, base>>20, peak>>20)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("held memory: base %d MiB, peak %d MiB, trimmed to %d MiB", base>>20, peak>>20, heldBytes()>>20)

	// Idle now: no further collections forced.
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	time.Sleep(5 * trimEvery)
	metrics.Read(s)
	if n := s[0].Value.Uint64() - before; n > 1 {
		t.Errorf("%d GC cycles while idle with nothing to trim", n)
	}
}
