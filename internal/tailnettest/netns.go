package tailnettest

import (
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// envInNetns marks the re-executed test binary.
const envInNetns = "TSCONNECT_TEST_IN_NETNS"

// Main is the TestMain of every package that starts tailnet nodes. Outside
// the namespace it prepares Headscale and a TLS certificate, re-executes
// the test binary in a fresh loopback-only network namespace and exits with
// its status. Inside, it brings lo up, checks that lo is the only
// interface, and runs the tests.
func Main(m *testing.M) {
	if os.Getenv(envInNetns) == "" {
		os.Exit(reexec())
	}
	if err := loopbackOnly(); err != nil {
		fmt.Fprintf(os.Stderr, "tailnettest: %v\n", err)
		os.Exit(2)
	}
	if os.Getenv("TSCONNECT_TEST_TSLOG") == "" {
		// tailscale's tlsdial warns through the standard logger about the
		// self-signed test certificate on every control connection.
		log.SetOutput(io.Discard)
	}
	code := m.Run()
	closeAll()
	os.Exit(code)
}

func reexec() int {
	hs, err := HeadscaleBinary()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tailnettest: cannot get headscale: %v\n", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "tailnettest-tls-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tailnettest: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeSelfSignedCert(certFile, keyFile); err != nil {
		fmt.Fprintf(os.Stderr, "tailnettest: %v\n", err)
		return 2
	}

	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
		envInNetns+"=1",
		envHeadscale+"="+hs,
		envTLSCert+"="+certFile,
		envTLSKey+"="+keyFile,
		// Clients trust the per-run certificate. Go reads SSL_CERT_FILE
		// once, the first time it needs the system roots, so it must be in
		// the environment from the start.
		"SSL_CERT_FILE="+certFile,
		// Inside a namespace with only lo, tailscale believes the network
		// is down and never connects; these knobs are read at program load.
		"TS_ASSUME_NETWORK_UP_FOR_TEST=true",
		"TS_NO_LOGS_NO_SUPPORT=true",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		// Without root, a user namespace grants the right to make a
		// network namespace where the kernel allows it.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "tailnettest: cannot run the tests in a loopback-only network namespace: %v\n"+
			"tailnettest: these tests start real tailnet nodes, which must not reach any non-loopback address;\n"+
			"tailnettest: run them as root, or where unprivileged user namespaces are enabled\n", err)
		return 2
	}
	return 0
}

// loopbackOnly brings lo up and checks that it is the only interface.
func loopbackOnly() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	// Without IPv6 on the host side, netcheck does not wait 3 s for IPv6
	// STUN answers that cannot come. Tailnet IPv6 lives in netstack and is
	// unaffected.
	for _, f := range []string{"all", "default", "lo"} {
		os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0o644)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("refusing to run: interface %q is not loopback; the namespace is not isolated", ifc.Name)
		}
	}
	return nil
}

// InNamespace reports whether this process runs in the isolated namespace.
func InNamespace() bool { return os.Getenv(envInNetns) != "" }
