package main

import (
	"runtime"
	"testing"
)

// TestHarden: after harden, the process cannot dump core (a core file
// would hold the key) and other processes of the user cannot read its
// memory.
func TestHarden(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
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
