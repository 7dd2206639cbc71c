//go:build !linux

package main

import "errors"

const landlockExecArg = "__landlock-exec"

const (
	isolateNetns    = "netns"
	isolateLandlock = "landlock"
)

func resolveIsolate(sub, mode string) (string, error) {
	if mode == "" {
		return "", nil
	}
	return "", usageErrorf(sub, "--isolate: network namespaces and Landlock are Linux's; use the proxy and --forward here")
}

func landlockAvailable() error { return errors.New("Linux only") }

func landlockCommand([]int, string, []string) (string, []string, error) {
	return "", nil, errors.New("--isolate: not on this system")
}

func landlockExec(args []string, sio stdio) int {
	return sio.fail(errors.New(landlockExecArg + ": Linux only"))
}
