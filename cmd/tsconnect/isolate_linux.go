package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/tsconnect/tsconnect/connector"
)

// Landlock (Linux ≥ 6.7, ABI 4: network rules), by its system calls: the
// --isolate=landlock tier. The command runs under a ruleset whose only
// allowed TCP connect()s are to the proxy's and the forwards' ports, so a
// program that ignores the proxy variables fails at once (EACCES) instead
// of reaching the host network. A ruleset binds a thread and what it
// executes, so tsconnect starts itself as a shim (landlockExec) that
// restricts its own thread and then executes the command.

const (
	sysLandlockCreateRuleset = 444
	sysLandlockAddRule       = 445
	sysLandlockRestrictSelf  = 446

	landlockCreateRulesetVersion = 1
	landlockRuleNetPort          = 2
	landlockAccessNetConnectTCP  = 2

	prSetNoNewPrivs = 38 // PR_SET_NO_NEW_PRIVS
)

// landlockExecArg is the shim's hidden subcommand: __landlock-exec PORTS
// PATH ARGV0 ARGS….
const landlockExecArg = "__landlock-exec"

// landlockABI is the kernel's Landlock ABI version, or why there is none.
func landlockABI() (int, error) {
	v, _, errno := syscall.Syscall(sysLandlockCreateRuleset, 0, 0, landlockCreateRulesetVersion)
	switch {
	case errno == syscall.ENOSYS:
		return 0, errors.New("this kernel has no Landlock (Linux 5.13+ with CONFIG_SECURITY_LANDLOCK)")
	case errno == syscall.EOPNOTSUPP:
		return 0, errors.New("Landlock is disabled on this machine (not in the kernel's lsm= list)")
	case errno != 0:
		return 0, fmt.Errorf("Landlock: %v", errno)
	}
	return int(v), nil
}

// The isolation tiers, best first.
const (
	isolateNetns    = "netns"
	isolateLandlock = "landlock"
)

// resolveIsolate says, before joining, which tier --isolate=MODE is on
// this machine ("" for none asked), or why it cannot work.
func resolveIsolate(sub, mode string) (string, error) {
	fail := func(err error) (string, error) {
		return "", &exitError{code: exitUsage, err: fmt.Errorf("--isolate=%s: %w", mode, err),
			hint: "without it, use the proxy (ALL_PROXY, HTTP(S)_PROXY) and --forward for programs that ignore proxies; 'tsconnect check --isolate' says what each tier lacks here"}
	}
	switch mode {
	case "":
		return "", nil
	case isolateNetns:
		if err := connector.IsolationAvailable(); err != nil {
			return fail(err)
		}
		return mode, nil
	case isolateLandlock:
		if err := landlockAvailable(); err != nil {
			return fail(err)
		}
		return mode, nil
	case "auto":
		nerr := connector.IsolationAvailable()
		if nerr == nil {
			return isolateNetns, nil
		}
		lerr := landlockAvailable()
		if lerr == nil {
			return isolateLandlock, nil
		}
		return fail(fmt.Errorf("no tier works here: netns: %v; landlock: %v", nerr, lerr))
	}
	return "", usageErrorf(sub, "--isolate %q: want netns, landlock, or auto (the best this machine has)", mode)
}

// landlockAvailable says whether the kernel has Landlock network rules.
func landlockAvailable() error {
	abi, err := landlockABI()
	if err == nil && abi < 4 {
		err = fmt.Errorf("Landlock ABI %d has no network rules: they need ABI 4 (Linux 6.7)", abi)
	}
	return err
}

// landlockCommand is the shim's command line for running path with argv
// under a ruleset that allows TCP connect() to ports only.
func landlockCommand(ports []int, path string, argv []string) (string, []string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("--isolate: cannot find tsconnect's own binary: %w", err)
	}
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(p)
	}
	return self, append([]string{"tsconnect", landlockExecArg, strings.Join(ps, ","), path}, argv...), nil
}

// landlockExec is the shim: restrict this thread, then execute the
// command on it. It returns only on failure.
func landlockExec(args []string, sio stdio) int {
	if len(args) < 3 {
		return sio.fail(errors.New(landlockExecArg + ": want PORTS PATH ARGV0 [ARGS…]"))
	}
	runtime.LockOSThread()
	if err := landlockRestrict(args[0]); err != nil {
		return sio.fail(&exitError{code: exitCannotExec, err: fmt.Errorf("--isolate=landlock: %w", err)})
	}
	err := syscall.Exec(args[1], args[2:], os.Environ())
	return sio.fail(&exitError{code: exitCannotExec, err: fmt.Errorf("%s: %w", args[1], err)})
}

// landlockRestrict puts this thread under a ruleset that handles TCP
// connect() and allows it to the comma-separated ports only.
func landlockRestrict(ports string) error {
	attr := struct{ fs, net, scoped uint64 }{net: landlockAccessNetConnectTCP}
	fd, _, errno := syscall.Syscall(sysLandlockCreateRuleset, uintptr(unsafe.Pointer(&attr)), 16, 0) // ABI 4's size: no scoped
	if errno != 0 {
		return fmt.Errorf("landlock_create_ruleset: %v", errno)
	}
	defer syscall.Close(int(fd))
	for _, p := range strings.Split(ports, ",") {
		if p == "" {
			continue
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return fmt.Errorf("port %q: %v", p, err)
		}
		rule := struct {
			access uint64
			port   uint64
		}{landlockAccessNetConnectTCP, port}
		if _, _, errno := syscall.Syscall6(sysLandlockAddRule, fd, landlockRuleNetPort, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); errno != 0 {
			return fmt.Errorf("landlock_add_rule port %d: %v", port, errno)
		}
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %v", errno)
	}
	if _, _, errno := syscall.Syscall(sysLandlockRestrictSelf, fd, 0, 0); errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %v", errno)
	}
	return nil
}
