// Package tailnettest runs a real tailnet on loopback for tests: a Headscale
// control server (with its embedded DERP and STUN), and tsnet service nodes
// that serve HTTP and TCP on the tailnet.
//
// Tailnet nodes probe interfaces, gateways and STUN servers. Traffic to any
// address but loopback is forbidden where these tests run, so every test
// binary that starts tailnet nodes calls [Main] from its TestMain: Main
// builds (or finds) Headscale, then re-executes the test binary inside a new
// network namespace that has only a loopback interface. A plain
// `go test ./...` is therefore safe. If the namespace cannot be made, the
// tests fail with a message saying why; they never skip silently.
//
// Headscale is built from the Go module proxy into the user cache directory
// the first time (a few minutes cold), or taken from $TSCONNECT_HEADSCALE.
package tailnettest
