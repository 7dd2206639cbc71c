package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestHarden: after harden, the process cannot dump core (a core file
// would hold the key) and other processes of the user cannot read its
// memory.
func TestHarden(t *testing.T) {
	// Undo an earlier run's harden in this process (go test -count=N).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if d, err := dumpable(); err != nil || !d {
		t.Fatalf("before harden: dumpable = %v, %v; want true (else the test proves nothing)", d, err)
	}
	if err := harden(); err != nil {
		t.Fatal(err)
	}
	if d, err := dumpable(); err != nil || d {
		t.Fatalf("after harden: dumpable = %v, %v; want false", d, err)
	}
}
