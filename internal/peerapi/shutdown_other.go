//go:build !linux

package peerapi

// ShutdownHost does nothing off Linux.
func ShutdownHost(peerAPIURLs []string) (int, error) { return 0, nil }
