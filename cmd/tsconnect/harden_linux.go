package main

import "golang.org/x/sys/unix"

// harden makes the process undumpable: no core file (which would hold the
// auth key and Vault token from memory), and no ptrace or /proc/<pid>/mem
// access by other processes of the same user, such as the agent's own
// code. It is not inherited across exec, so the child of `run` is
// unaffected; nor is RLIMIT_CORE touched, for the same reason.
func harden() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// dumpable reports the process's dumpable flag, for tests.
func dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return v != 0, err
}
