//go:build !linux

package peerapi

// ShutdownHost does nothing off Linux.
func ShutdownHost(ports map[uint16]bool) (int, error) { return 0, nil }
