//go:build !linux

package connector

import (
	"errors"
	"os/exec"
)

var errIsolateLinux = errors.New("connector: isolated commands need Linux (network namespaces)")

// IsolationShim does nothing here: see the Linux version.
func IsolationShim() {}

// IsolationAvailable says why there are no isolated commands here.
func IsolationAvailable() error { return errIsolateLinux }

// IsolatedCmd is a command in an isolated namespace: Linux only.
type IsolatedCmd struct{ *exec.Cmd }

// IsolatedCommand fails here: see the Linux version.
func (c *Connector) IsolatedCommand(IsolateOptions, *ChildUser, string, ...string) (*IsolatedCmd, error) {
	return nil, errIsolateLinux
}

// Start fails here.
func (ic *IsolatedCmd) Start() error { return errIsolateLinux }

// Wait fails here.
func (ic *IsolatedCmd) Wait() error { return errIsolateLinux }
