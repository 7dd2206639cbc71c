//go:build !linux

package main

import (
	"errors"
	"io"
	"os"
	"os/exec"

	"github.com/tsconnect/tsconnect/connector"
)

const landlockExecArg = "__landlock-exec"

const (
	isolateNetns    = "netns"
	isolateLandlock = "landlock"
	netnsExecArg    = "__netns-exec"
)

func resolveIsolate(sub, mode string) (string, error) {
	if mode == "" {
		return "", nil
	}
	return "", usageErrorf(sub, "--isolate: network namespaces and Landlock are Linux's; use the proxy and --forward here")
}

func netnsAvailable() error    { return errors.New("Linux only") }
func landlockAvailable() error { return errors.New("Linux only") }

func netnsExec(args []string, sio stdio) int {
	return sio.fail(errors.New(netnsExecArg + ": Linux only"))
}

func landlockCommand([]int, string, []string) (string, []string, error) {
	return "", nil, errors.New("--isolate: not on this system")
}

func landlockExec(args []string, sio stdio) int {
	return sio.fail(errors.New(landlockExecArg + ": Linux only"))
}

func netnsCommand(string, []string, *connector.ChildUser) (*exec.Cmd, *os.File, error) {
	return nil, nil, errors.New("--isolate: not on this system")
}

func serveNetns(*session, *exec.Cmd, *os.File, connector.IsolateOptions) (io.Closer, error) {
	return nil, errors.New("--isolate: not on this system")
}
