//go:build !linux

package main

import "errors"

const landlockExecArg = "__landlock-exec"

func checkIsolate(sub, mode string) error {
	if mode == "" {
		return nil
	}
	return usageErrorf(sub, "--isolate: Landlock is Linux's; use the proxy and --forward here")
}

func landlockCommand([]int, string, []string) (string, []string, error) {
	return "", nil, errors.New("--isolate: not on this system")
}

func landlockExec(args []string, sio stdio) int {
	return sio.fail(errors.New(landlockExecArg + ": Linux only"))
}
