package main

import (
	"context"
	"errors"
)

// runDemo is the `tsconnect demo` subcommand.
//
// STUB: another change replaces this file with the real demo (an
// in-process tailnet from internal/demonet). Keep the signature: the
// subcommand table in main.go calls it.
func runDemo(ctx context.Context, args []string, sio stdio) int {
	return sio.fail(errors.New("demo: not yet implemented"))
}
