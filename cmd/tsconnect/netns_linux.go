package main

// The --isolate=netns tier: the command runs in a network namespace of its
// own (and a mount namespace, for its resolv.conf) whose only interfaces
// are lo and a TUN device; tsconnect serves the other end of the TUN
// device (connector.ServeTUN), so every connection the command opens goes
// through the connection layer, whatever the command does with proxy
// variables. Run as root, tsconnect makes plain namespaces; otherwise it
// makes them in a user namespace of its own, in which its uid and gid map
// to themselves.
//
// The namespace is made at clone(2) by exec.Cmd; what must happen inside
// it before the command runs (lo up, the TUN device, its address and
// route, resolv.conf) tsconnect does as a shim, netnsExec, which hands the
// TUN device to its parent over a socket (fd 3) and waits for the
// resolv.conf to use before executing the command.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tsconnect/tsconnect/connector"
)

// netnsExecArg is the shim's hidden subcommand: __netns-exec USER PATH
// ARGV0 ARGS…, USER "-" or uid:gid:groups (a root tsconnect's
// --child-user); or __netns-exec --probe. With --relay first, the shim
// starts itself, with the rest of the arguments, in the namespaces (see
// netnsRelay).
const (
	netnsExecArg = "__netns-exec"
	netnsRelay   = "--relay"
)

// netnsShim is how tsconnect starts the shim with args: as root, in the
// namespaces; otherwise through the relay, which makes them.
func netnsShim(self string, args ...string) *exec.Cmd {
	cmd := &exec.Cmd{Path: self, Args: append([]string{"tsconnect", netnsExecArg}, args...)}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = netnsProcAttr()
	} else {
		cmd.Args = slices.Insert(cmd.Args, 2, netnsRelay)
	}
	return cmd
}

// netnsProcAttr makes the shim's namespaces.
func netnsProcAttr() *syscall.SysProcAttr {
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

// netnsAvailable says whether the netns tier works here: the shim's probe
// makes the namespaces and a TUN device in them, and exits.
func netnsAvailable() error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find tsconnect's own binary: %w", err)
	}
	cmd := netnsShim(self, "--probe")
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
			msg = strings.TrimPrefix(lastLine(msg), "tsconnect: ")
			msg = strings.TrimPrefix(msg, "error: ")
			return errors.New(strings.TrimPrefix(msg, "--isolate=netns: "))
		}
		return err
	}
	return nil
}

// netnsCommand is the shim's command for running path with argv in the
// namespaces, and the parent's end of the socket the TUN device comes
// over. The caller starts cmd, then calls serveNetns.
func netnsCommand(path string, argv []string, cu *connector.ChildUser) (*exec.Cmd, *os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("--isolate: cannot find tsconnect's own binary: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("--isolate: socketpair: %w", err)
	}
	user := "-"
	if cu != nil {
		c := cu.Credential
		groups := make([]string, len(c.Groups))
		for i, g := range c.Groups {
			groups[i] = strconv.FormatUint(uint64(g), 10)
		}
		user = fmt.Sprintf("%d:%d:%s", c.Uid, c.Gid, strings.Join(groups, ","))
	}
	cmd := netnsShim(self, append([]string{user, path}, argv...)...)
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fds[1]), "netns-shim")}
	return cmd, os.NewFile(uintptr(fds[0]), "netns"), nil
}

// serveNetns takes the TUN device from the started shim over sock, serves
// it, and lets the shim go on to the command. It closes sock.
func serveNetns(s *session, cmd *exec.Cmd, sock *os.File, opts connector.IsolateOptions) (*connector.Isolated, error) {
	defer sock.Close()
	cmd.ExtraFiles[0].Close() // the shim's end: EOF here if it dies
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("--isolate=netns: receiving the TUN device: %w", err)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		return nil, errors.New("--isolate=netns: the namespace was not set up (see the message above)")
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("--isolate=netns: no TUN device came from the namespace")
	}
	opts.IPv6 = n == 1 && buf[0] == 1
	iso, err := s.c.ServeTUN(os.NewFile(uintptr(fds[0]), "tun"), opts)
	if err != nil {
		return nil, fmt.Errorf("--isolate=netns: %w", err)
	}
	if _, err := sock.Write([]byte(s.c.ResolvConf())); err != nil {
		iso.Close()
		return nil, fmt.Errorf("--isolate=netns: %w", err)
	}
	return iso, nil
}

// netnsExec is the shim, inside the namespaces. It returns only on
// failure.
func netnsExec(args []string, sio stdio) int {
	fail := func(err error) int {
		return sio.fail(&exitError{code: exitCannotExec, err: fmt.Errorf("--isolate=netns: %w", err)})
	}
	if len(args) > 0 && args[0] == netnsRelay {
		return netnsRelayExec(args[1:], sio)
	}
	runtime.LockOSThread()
	tun, v6, err := netnsSetup()
	if len(args) == 1 && args[0] == "--probe" {
		if err != nil {
			return fail(err)
		}
		return exitOK
	}
	if len(args) < 3 {
		return sio.fail(errors.New(netnsExecArg + ": want USER PATH ARGV0 [ARGS…]"))
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
		return fail(fmt.Errorf("handing the TUN device to tsconnect: %w", err))
	}
	unix.Close(tun)
	conf := make([]byte, 4096)
	n, err := unix.Read(sock, conf)
	if err != nil || n == 0 {
		return fail(errors.New("tsconnect did not serve the namespace's network"))
	}
	unix.Close(sock)
	if err := bindResolvConf(conf[:n]); err != nil {
		return fail(err)
	}
	if err := dropNetnsPrivileges(args[0]); err != nil {
		return fail(err)
	}
	err = syscall.Exec(args[1], args[2:], os.Environ())
	return sio.fail(&exitError{code: exitCannotExec, err: fmt.Errorf("%s: %w", args[1], err)})
}

// netnsRelayExec is the relay: it starts the shim in a new user namespace
// (with the network and mount namespaces in it), passes signals on and
// exits with its status. It exists because tsconnect cannot do it itself:
// the parent writes the child's uid_map, and tsconnect is not dumpable
// (so that no process of its uid may read its memory), which makes the
// child's /proc files root's until it executes; the relay, a fresh
// executable, is dumpable, and holds no secret.
func netnsRelayExec(args []string, sio stdio) int {
	self, err := os.Executable()
	if err != nil {
		return sio.fail(err)
	}
	cmd := &exec.Cmd{Path: self, Args: append([]string{"tsconnect", netnsExecArg}, args...)}
	cmd.SysProcAttr = netnsProcAttr()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if sock := os.NewFile(3, "netns-shim"); len(args) > 0 && args[0] != "--probe" {
		cmd.ExtraFiles = []*os.File{sock}
	}
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EINVAL) {
			err = fmt.Errorf("this machine refuses tsconnect a user namespace (%v): they are off (kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0), restricted (AppArmor's kernel.apparmor_restrict_unprivileged_userns) or refused by a seccomp profile (Docker's, CRI-O's); as root tsconnect needs none", err)
		}
		return sio.fail(&exitError{code: exitCannotExec, err: err})
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
func netnsSetup() (tun int, v6 bool, err error) {
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	defer unix.Close(ctl)
	if err := linkUp(ctl, "lo"); err != nil {
		return -1, false, err
	}
	tun, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return -1, false, fmt.Errorf("/dev/net/tun: %w (on this machine only root may open it; as another user tsconnect needs it mode 0666, as most distributions make it)", err)
		}
		return -1, false, fmt.Errorf("/dev/net/tun: %w (the tun module, or the device in this container, is missing)", err)
	}
	ifr, err := unix.NewIfreq(connector.IsolatedDevice)
	if err != nil {
		return -1, false, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(tun, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(tun)
		return -1, false, fmt.Errorf("TUNSETIFF: %w", err)
	}
	steps := []struct {
		req uint
		set func(*unix.Ifreq) error
	}{
		{unix.SIOCSIFMTU, func(r *unix.Ifreq) error { r.SetUint32(connector.IsolatedMTU); return nil }},
		{unix.SIOCSIFADDR, func(r *unix.Ifreq) error { return r.SetInet4Addr(connector.IsolatedAddr.Addr().AsSlice()) }},
		{unix.SIOCSIFNETMASK, func(r *unix.Ifreq) error {
			mask := net4Mask(connector.IsolatedAddr.Bits())
			return r.SetInet4Addr(mask[:])
		}},
	}
	for _, st := range steps {
		r, _ := unix.NewIfreq(connector.IsolatedDevice)
		if err := st.set(r); err != nil {
			unix.Close(tun)
			return -1, false, err
		}
		if err := unix.IoctlIfreq(ctl, st.req, r); err != nil {
			unix.Close(tun)
			return -1, false, fmt.Errorf("configuring %s: %w", connector.IsolatedDevice, err)
		}
	}
	if err := linkUp(ctl, connector.IsolatedDevice); err != nil {
		unix.Close(tun)
		return -1, false, err
	}
	v6 = ipv6Enabled()
	if err := addDefaultRoutes(connector.IsolatedDevice, v6); err != nil {
		unix.Close(tun)
		return -1, false, fmt.Errorf("routes through %s: %w", connector.IsolatedDevice, err)
	}
	return tun, v6, nil
}

// ipv6Enabled reports whether this network namespace has IPv6 (a kernel
// booted with ipv6.disable=1, or a namespace with disable_ipv6, has not).
func ipv6Enabled() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/default/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

func lastLine(s string) string { return s[strings.LastIndexByte(s, '\n')+1:] }

func net4Mask(bits int) [4]byte {
	m := ^uint32(0) << (32 - bits)
	return [4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
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

// addDefaultRoutes adds 0.0.0.0/0 on the link dev and, when v6, the
// IPv6 address and ::/0 on it too.
func addDefaultRoutes(dev string, v6 bool) error {
	ifc, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.IoctlIfreq(ctl, unix.SIOCGIFINDEX, ifc)
	unix.Close(ctl)
	if err != nil {
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
	addr := connector.IsolatedAddr6.Addr().As16()
	b := make([]byte, 48)
	b[0], b[1], b[2] = unix.AF_INET6, byte(connector.IsolatedAddr6.Bits()), unix.IFA_F_NODAD
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
// namespaces: the ambient capabilities the shim had are cleared; a root
// tsconnect's --child-user is taken; a root command loses CAP_SYS_ADMIN
// and CAP_NET_ADMIN (setns(2) into another namespace, mounts, interfaces).
func dropNetnsPrivileges(user string) error {
	const prCapAmbient, prCapAmbientClearAll, prCapbsetDrop = 47, 4, 24
	if err := unix.Prctl(prCapAmbient, prCapAmbientClearAll, 0, 0, 0); err != nil {
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
			if err := unix.Prctl(prCapbsetDrop, c, 0, 0, 0); err != nil {
				return fmt.Errorf("dropping capability %d: %w", c, err)
			}
		}
	}
	return nil
}
