package connector

// An isolated command (Connector.IsolatedCommand; tsconnect run
// --isolate=netns): it runs in a network namespace of its own (and a
// mount namespace, for its resolv.conf) whose only interfaces are lo and a
// TUN device whose other end ServeTUN serves. As root the namespaces are
// plain ones; otherwise they are made in a user namespace of their own, in
// which the uid and gid map to themselves.
//
// The namespaces are made at clone(2) by exec.Cmd; what must happen inside
// them before the command runs (lo up, the TUN device, its addresses and
// routes, resolv.conf) the program's own binary does, re-executed as a
// shim (IsolationShim): it hands the TUN device to its parent over a
// socket (fd 3) and waits for the resolv.conf before executing the
// command.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tsconnect/tsconnect/secrets"
)

// The shim's arguments: isolateShimArg USER PATH ARGV0 ARGS…, USER "-" or
// uid:gid:groups (a root parent's ChildUser); or isolateShimArg --probe.
// With --relay first, the shim starts itself, with the rest of the
// arguments, in the namespaces (see isolationRelay).
const (
	isolateShimArg = "__tsconnect-isolate"
	isolateRelay   = "--relay"
	isolateProbe   = "--probe"
)

// IsolationShim runs the shim of IsolatedCommand when this process was
// started as one, and then never returns; otherwise it returns at once. A
// program that uses IsolatedCommand must call it first thing in main
// (before anything starts goroutines that matter or reads flags): the
// shim is the program's own binary, re-executed.
func IsolationShim() {
	if len(os.Args) < 2 || os.Args[1] != isolateShimArg {
		return
	}
	os.Exit(isolationShim(os.Args[2:]))
}

// IsolationAvailable says whether IsolatedCommand works here, and if not
// why: the shim's probe makes the namespaces and a TUN device in them,
// and exits. It needs IsolationShim in main, as IsolatedCommand does.
func IsolationAvailable() error {
	cmd, err := shimCommand(isolateProbe)
	if err != nil {
		return err
	}
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("making the namespaces: %w", err)
	}
	stop := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
	defer stop.Stop()
	if err := cmd.Wait(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(strings.TrimPrefix(msg[strings.LastIndexByte(msg, '\n')+1:], shimErrPrefix))
		}
		return err
	}
	return nil
}

// shimErrPrefix starts the shim's one line on stderr when it fails.
const shimErrPrefix = "isolate: "

// shimCommand is how the parent starts the shim with args: as root, in
// the namespaces; otherwise through the relay, which makes them.
func shimCommand(args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this program's own binary, which is the shim: %w", err)
	}
	if os.Geteuid() != 0 {
		return shimIn(self, append([]string{isolateRelay}, args...), nil), nil
	}
	return shimIn(self, args, isolateProcAttr()), nil
}

// shimIn is the shim, self, with args, started with attr.
func shimIn(self string, args []string, attr *syscall.SysProcAttr) *exec.Cmd {
	return &exec.Cmd{Path: self, Args: append([]string{"tsconnect-isolate", isolateShimArg}, args...), SysProcAttr: attr}
}

// isolateProcAttr makes the shim's namespaces.
func isolateProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	if os.Geteuid() != 0 {
		uid, gid := os.Geteuid(), os.Getegid()
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		// The shim needs these in its namespaces; it clears them before
		// it executes the command, which then has none.
		attr.AmbientCaps = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN}
	}
	return attr
}

// IsolatedCmd is a command that runs in an isolated network namespace
// whose only way out is the connector (see IsolatedCommand). Set Stdin,
// Stdout, Stderr (and Env, if not the default) on its Cmd, then Start and
// Wait through it, not through Cmd; signal it through Cmd.Process.
type IsolatedCmd struct {
	*exec.Cmd
	c    *Connector
	opts IsolateOptions
	sock *os.File
	iso  *Isolated
}

// IsolatedCommand returns a command that runs name (looked up in PATH)
// with args in a network namespace whose only network is the connector,
// served by ServeTUN: names resolve inside the tailnet as the allowlist
// allows, and every TCP connection goes through the connection layer, so
// a program that ignores proxy variables cannot bypass the allowlist. Its
// environment is this process's with secrets scrubbed and no proxy
// variables (the namespace's loopback is its own). user, if not nil, is
// who it runs as (the process must be root). The program must call
// IsolationShim first thing in main. Linux only.
func (c *Connector) IsolatedCommand(opts IsolateOptions, user *ChildUser, name string, args ...string) (*IsolatedCmd, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("connector: isolated command: socketpair: %w", err)
	}
	who := "-"
	if user != nil {
		cr := user.Credential
		groups := make([]string, len(cr.Groups))
		for i, g := range cr.Groups {
			groups[i] = strconv.FormatUint(uint64(g), 10)
		}
		who = fmt.Sprintf("%d:%d:%s", cr.Uid, cr.Gid, strings.Join(groups, ","))
	}
	cmd, err := shimCommand(append([]string{who, path, name}, args...)...)
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, fmt.Errorf("connector: isolated command: %w", err)
	}
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fds[1]), "isolate-shim")}
	cmd.Env = isolatedEnv()
	return &IsolatedCmd{Cmd: cmd, c: c, opts: opts, sock: os.NewFile(uintptr(fds[0]), "isolate")}, nil
}

// isolatedEnv is the environment of an isolated command: secrets scrubbed,
// as always, and no proxy variables, the connector's or any other: the
// namespace's loopback is its own, and no proxy outside is reachable.
func isolatedEnv() []string {
	var out []string
	for _, kv := range secrets.ScrubEnv(os.Environ()) {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY":
		default:
			out = append(out, kv)
		}
	}
	return out
}

// Start starts the shim, takes the TUN device from it, serves it, and
// lets the shim go on to the command. When it fails the shim is gone.
func (ic *IsolatedCmd) Start() error {
	defer ic.sock.Close()
	err := ic.Cmd.Start()
	ic.ExtraFiles[0].Close() // the shim's end: EOF below if it dies
	if err != nil {
		return fmt.Errorf("connector: isolated command: %w", err)
	}
	if ic.iso, err = ic.serve(); err != nil {
		ic.Process.Kill()
		ic.Cmd.Wait()
		return fmt.Errorf("connector: isolated command: %w", err)
	}
	return nil
}

func (ic *IsolatedCmd) serve() (*Isolated, error) {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(ic.sock.Fd()), buf, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("receiving the TUN device: %w", err)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		return nil, errors.New("the namespace was not set up (the shim's message is on the command's stderr)")
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("no TUN device came from the namespace")
	}
	opts := ic.opts
	opts.IPv6 = n == 1 && buf[0] == 1
	iso, err := ic.c.ServeTUN(os.NewFile(uintptr(fds[0]), "tun"), opts)
	if err != nil {
		return nil, err
	}
	if _, err := ic.sock.Write([]byte(ic.c.ResolvConf())); err != nil {
		iso.Close()
		return nil, err
	}
	return iso, nil
}

// Wait waits for the command to exit, then stops serving its network.
func (ic *IsolatedCmd) Wait() error {
	err := ic.Cmd.Wait()
	if ic.iso != nil {
		ic.iso.Close()
	}
	return err
}

// isolationShim is the shim, inside the namespaces (or the relay, which
// makes them); it returns an exit status only on failure.
func isolationShim(args []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s%v\n", shimErrPrefix, err)
		return 126
	}
	if len(args) > 0 && args[0] == isolateRelay {
		return isolationRelay(args[1:], fail)
	}
	runtime.LockOSThread()
	tun, v6, err := netnsSetup()
	if len(args) == 1 && args[0] == isolateProbe {
		if err != nil {
			return fail(err)
		}
		return 0
	}
	if len(args) < 3 {
		return fail(errors.New("want USER PATH ARGV0 [ARGS…]"))
	}
	if err != nil {
		return fail(err)
	}
	const sock = 3
	hello := []byte{0}
	if v6 {
		hello[0] = 1
	}
	if err := unix.Sendmsg(sock, hello, unix.UnixRights(tun), nil, 0); err != nil {
		return fail(fmt.Errorf("handing the TUN device over: %w", err))
	}
	unix.Close(tun)
	conf := make([]byte, 4096)
	n, err := unix.Read(sock, conf)
	if err != nil || n == 0 {
		return fail(errors.New("the namespace's network was not served"))
	}
	unix.Close(sock)
	if err := bindResolvConf(conf[:n]); err != nil {
		return fail(err)
	}
	if err := dropNetnsPrivileges(args[0]); err != nil {
		return fail(err)
	}
	err = syscall.Exec(args[1], args[2:], os.Environ())
	return fail(fmt.Errorf("%s: %w", args[1], err))
}

// isolationRelay is the relay: it starts the shim in a new user namespace
// (with the network and mount namespaces in it), passes signals on and
// exits with its status. It exists because the parent cannot do it itself:
// the parent writes the child's uid_map, and the tsconnect command is not dumpable
// (so that no process of its uid may read its memory), which makes the
// child's /proc files root's until it executes; the relay, a fresh
// executable, is dumpable, and holds no secret.
func isolationRelay(args []string, fail func(error) int) int {
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	cmd := shimIn(self, args, isolateProcAttr())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if sock := os.NewFile(3, "netns-shim"); len(args) > 0 && args[0] != isolateProbe {
		cmd.ExtraFiles = []*os.File{sock}
	}
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EINVAL) {
			err = fmt.Errorf("this machine refuses a user namespace (%v): they are off (kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0), restricted (AppArmor's kernel.apparmor_restrict_unprivileged_userns) or refused by a seccomp profile (Docker's, CRI-O's); as root none is needed", err)
		}
		return fail(err)
	}
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigc:
			cmd.Process.Signal(sig)
		case <-waitc:
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return cmd.ProcessState.ExitCode()
		}
	}
}

// netnsSetup brings lo up and makes the TUN device, with its address, MTU
// and the default routes through it. It returns the device's fd, and
// whether IPv6 is set up too.
func netnsSetup() (_ int, v6 bool, err error) {
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	defer unix.Close(ctl)
	if err := linkUp(ctl, "lo"); err != nil {
		return -1, false, err
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return -1, false, fmt.Errorf("/dev/net/tun: %w (on this machine only root may open it; as another user tsconnect needs it mode 0666, as most distributions make it)", err)
		}
		return -1, false, fmt.Errorf("/dev/net/tun: %w (the tun module, or the device in this container, is missing)", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	steps := []struct {
		fd  int
		req uint
		set func(*unix.Ifreq) error
	}{
		{fd, unix.TUNSETIFF, func(r *unix.Ifreq) error { r.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI); return nil }},
		{ctl, unix.SIOCSIFMTU, func(r *unix.Ifreq) error { r.SetUint32(IsolatedMTU); return nil }},
		{ctl, unix.SIOCSIFADDR, func(r *unix.Ifreq) error { return r.SetInet4Addr(IsolatedAddr.Addr().AsSlice()) }},
		{ctl, unix.SIOCSIFNETMASK, func(r *unix.Ifreq) error { return r.SetInet4Addr(net.CIDRMask(IsolatedAddr.Bits(), 32)) }},
	}
	for _, st := range steps {
		r, err := unix.NewIfreq(IsolatedDevice)
		if err == nil {
			err = st.set(r)
		}
		if err == nil {
			err = unix.IoctlIfreq(st.fd, st.req, r)
		}
		if err != nil {
			return -1, false, fmt.Errorf("configuring %s: %w", IsolatedDevice, err)
		}
	}
	if err := linkUp(ctl, IsolatedDevice); err != nil {
		return -1, false, err
	}
	v6 = ipv6Enabled()
	if err := addDefaultRoutes(ctl, IsolatedDevice, v6); err != nil {
		return -1, false, fmt.Errorf("routes through %s: %w", IsolatedDevice, err)
	}
	return fd, v6, nil
}

// ipv6Enabled reports whether this network namespace has IPv6 (a kernel
// booted with ipv6.disable=1, or a namespace with disable_ipv6, has not).
func ipv6Enabled() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/default/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

// linkUp sets IFF_UP on the interface name.
func linkUp(ctl int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(ctl, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(ctl, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

// addDefaultRoutes adds 0.0.0.0/0 on the link dev (ctl: a socket for its
// index) and, when v6, the
// IPv6 address and ::/0 on it too.
func addDefaultRoutes(ctl int, dev string, v6 bool) error {
	ifc, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(ctl, unix.SIOCGIFINDEX, ifc); err != nil {
		return err
	}
	index := ifc.Uint32()
	ne := binary.NativeEndian
	route := func(family byte, scope byte) []byte {
		// rtmsg (12), then RTA_OIF (8).
		b := make([]byte, 20)
		b[0] = family
		b[4], b[5], b[6], b[7] = unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, scope, unix.RTN_UNICAST
		ne.PutUint16(b[12:], 8)
		ne.PutUint16(b[14:], unix.RTA_OIF)
		ne.PutUint32(b[16:], index)
		return b
	}
	if err := rtnetlink(unix.RTM_NEWROUTE, route(unix.AF_INET, unix.RT_SCOPE_LINK)); err != nil {
		return fmt.Errorf("IPv4 default route: %w", err)
	}
	if !v6 {
		return nil
	}
	// ifaddrmsg (8) with IFA_F_NODAD (no duplicate detection: a
	// tentative address would not be used for a second), then IFA_LOCAL
	// and IFA_ADDRESS (20 each).
	addr := IsolatedAddr6.Addr().As16()
	b := make([]byte, 48)
	b[0], b[1], b[2] = unix.AF_INET6, byte(IsolatedAddr6.Bits()), unix.IFA_F_NODAD
	ne.PutUint32(b[4:], index)
	for i, typ := range []uint16{unix.IFA_LOCAL, unix.IFA_ADDRESS} {
		at := 8 + 20*i
		ne.PutUint16(b[at:], 20)
		ne.PutUint16(b[at+2:], typ)
		copy(b[at+4:], addr[:])
	}
	if err := rtnetlink(unix.RTM_NEWADDR, b); err != nil {
		return fmt.Errorf("IPv6 address: %w", err)
	}
	if err := rtnetlink(unix.RTM_NEWROUTE, route(unix.AF_INET6, unix.RT_SCOPE_UNIVERSE)); err != nil {
		return fmt.Errorf("IPv6 default route: %w", err)
	}
	return nil
}

// rtnetlink sends one request of type typ with body, creating what it
// names, and returns the kernel's answer to it.
func rtnetlink(typ uint16, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ne := binary.NativeEndian
	b := make([]byte, 16, 16+len(body))
	ne.PutUint32(b[0:], uint32(16+len(body)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	ne.PutUint32(b[8:], 1)
	b = append(b, body...)
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	resp := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, resp, 0)
	if err != nil {
		return err
	}
	if n < 20 || ne.Uint16(resp[4:]) != unix.NLMSG_ERROR {
		return errors.New("no answer from rtnetlink")
	}
	if e := int32(ne.Uint32(resp[16:])); e != 0 {
		return syscall.Errno(-e)
	}
	return nil
}

// bindResolvConf puts conf over /etc/resolv.conf in this mount namespace
// (made private first, so nothing propagates out of it). The file behind
// it is unlinked at once: nothing is left on disk.
func bindResolvConf(conf []byte) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mount namespace private: %w", err)
	}
	f, err := os.CreateTemp("", "tsconnect-resolv-*")
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(conf)
	if err == nil {
		err = f.Chmod(0o644)
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := unix.Mount(f.Name(), "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("mounting the namespace's resolv.conf on /etc/resolv.conf (it must exist): %w", err)
	}
	return nil
}

// dropNetnsPrivileges leaves the command with no way out of the
// namespaces: the ambient capabilities the shim had are cleared; the
// ChildUser, if any, is taken; a root command loses CAP_SYS_ADMIN and
// CAP_NET_ADMIN (setns(2) into another namespace, mounts, interfaces).
func dropNetnsPrivileges(user string) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	if user != "-" {
		parts := strings.SplitN(user, ":", 3)
		if len(parts) != 3 {
			return fmt.Errorf("bad user %q", user)
		}
		uid, err1 := strconv.Atoi(parts[0])
		gid, err2 := strconv.Atoi(parts[1])
		var groups []int
		for _, g := range strings.Split(parts[2], ",") {
			if g == "" {
				continue
			}
			n, err := strconv.Atoi(g)
			if err != nil {
				return fmt.Errorf("bad group %q", g)
			}
			groups = append(groups, n)
		}
		if err1 != nil || err2 != nil {
			return fmt.Errorf("bad user %q", user)
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return fmt.Errorf("setgid: %w", err)
		}
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("setuid: %w", err)
		}
		return nil
	}
	if os.Geteuid() == 0 {
		for _, c := range []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN} {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
				return fmt.Errorf("dropping capability %d: %w", c, err)
			}
		}
	}
	return nil
}
