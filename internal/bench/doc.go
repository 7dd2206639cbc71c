// Package bench compares tsconnect's proxy with tailscaled's, with tsnet
// itself and with raw loopback TCP, in one run on one loopback-only
// Headscale tailnet. It is a test harness, not a library: the tests of this
// package drive it.
//
// # Running it
//
// The full benchmark prints a markdown table (take the figures on a quiet
// machine; the benchmark's own client and server share its CPUs):
//
//	go test ./internal/bench -run TestBench -v -timeout 60m -full
//
// Flags after the package set the sizes (-bulk MiB, -bulk-reps, -conns,
// -concurrent, -hold, -idle, -teardown-wait, -columns, -tsconnect
// auto|cmd|standin, -tsconnect-flags "--opaque-tunnels" for more flags of
// the tsconnect columns' command, -out file); -profile DIR also takes CPU, heap and
// allocation profiles of the stand-in and of tailscaled under load, for
// `go tool pprof`. TSCONNECT_BENCH=1 is the same as -full. Without it,
// TestBench skips, and TestSmoke runs every column with tiny sizes and
// checks only that the right bytes and connections went through: it is
// part of `go test ./...` and never asserts a timing.
//
// # What is measured
//
// The bench server speaks a small protocol (see proto.go): download n
// bytes, upload n bytes, ping. It runs once on a tsnet node in the
// benchmark process and once on 127.0.0.1. The columns reach it through
//
//   - raw loopback TCP (the physical ceiling),
//   - tsnet.Server.Dial from a second node in the benchmark process (the
//     ceiling for any proxy built on tsnet),
//   - tsconnect's SOCKS5 and HTTP CONNECT proxy: `tsconnect up` built from
//     cmd/tsconnect (or, if that does not build, the stand-in in
//     ./standin, which runs the same connector.Start),
//   - tailscaled's SOCKS5 and HTTP proxies, in userspace-networking mode,
//     built at the tailscale.com version this module requires from the Go
//     module proxy into the user cache (TestMain does it before the tests
//     enter the network namespace; a few minutes, once).
//
// Every proxy column is a process of its own, started, measured and torn
// down in turn, so its start time, memory (VmRSS) and teardown are its own.
// Like every test that starts tailnet nodes, these run inside
// tailnettest's loopback-only network namespace.
package bench
