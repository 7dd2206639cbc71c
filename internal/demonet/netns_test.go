package demonet

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests start real tailnet nodes. Packets to anything but loopback
// are forbidden where they run, and the point of the tests is to show that
// the demo sends none even when the machine has a real-looking network. So
// TestMain re-executes the test binary in a private network namespace that
// looks like a laptop's: lo, plus "decoy0" with a TEST-NET address
// (192.0.2.10/24, 2001:db8::10/64) and default routes through it. decoy0 is
// a TAP device whose other end this process holds: whatever the kernel
// routes there (a packet for the internet, an ARP request for the gateway)
// is read and recorded here, and goes nowhere else. Packets to the
// machine's own address 192.0.2.10 go through lo; a packet socket on all
// interfaces sees those (see capture).

const (
	envNetns    = "DEMONET_TEST_IN_NETNS"
	envScenario = "DEMONET_TEST_SCENARIO" // the child process runs a scenario, see scenario_test.go
	envResult   = "DEMONET_TEST_RESULT"
	envOffline  = "DEMONET_TEST_OFFLINE" // the child has a namespace of its own, with only lo

	decoyName = "decoy0"
)

var (
	decoyAddr4 = netip.MustParseAddr("192.0.2.10")
	decoyGW4   = netip.MustParseAddr("192.0.2.1")
	decoyAddr6 = netip.MustParseAddr("2001:db8::10")
	decoyGW6   = netip.MustParseAddr("2001:db8::1")
)

func TestMain(m *testing.M) {
	if os.Getenv(envScenario) != "" {
		os.Exit(scenarioChild())
	}
	if os.Getenv(envNetns) == "" {
		os.Exit(reexecInNetns())
	}
	if err := setupLaptopNetwork(); err != nil {
		fmt.Fprintf(os.Stderr, "demonet test: setting up the namespace: %v\n", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// reexecInNetns runs the test binary again in a new network namespace
// (inside a new user namespace when not root) and returns its exit code.
func reexecInNetns() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(cleanEnv(), envNetns+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "demonet test: cannot run the tests in a private network namespace: %v\n"+
			"demonet test: these tests start real tailnet nodes, which must not reach the network;\n"+
			"demonet test: run them as root, or where unprivileged user namespaces are enabled\n", err)
		return 2
	}
	return 0
}

// cleanEnv returns the environment without tailscale's knobs: Start must
// set them itself at run time, and the tests check that this is enough.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "TS_") || name == "IN_TS_TEST" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// The decoy interface, set up by TestMain.
var decoy struct {
	ifindex int
	tap     *os.File // nil when decoy0 is a dummy interface

	mu     sync.Mutex
	frames []string // summaries of what the kernel sent to decoy0
}

// setupLaptopNetwork brings lo up and adds decoy0 with addresses and
// default routes, then waits for the kernel's own chatter on it to end.
func setupLaptopNetwork() error {
	// A fresh network namespace has lo and nothing else. Anything more
	// means this is not one, and the host's network must not be touched.
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifs {
		if ifc.Name != "lo" {
			return fmt.Errorf("refusing to run: interface %q exists, so this is not a fresh network namespace", ifc.Name)
		}
	}
	ipCmd, err := findIP()
	if err != nil {
		return err
	}
	ip := func(args ...string) error {
		out, err := exec.Command(ipCmd, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ip("link", "set", "lo", "up"); err != nil {
		return err
	}
	if decoy.tap, err = openTap(decoyName); err != nil {
		// No /dev/net/tun: a dummy interface swallows packets just as
		// well; its tx_packets counter still counts them.
		if derr := ip("link", "add", decoyName, "type", "dummy"); derr != nil {
			return fmt.Errorf("cannot make the decoy interface: tap: %v; dummy: %v", err, derr)
		}
	}
	// Keep the kernel quiet on decoy0: no router solicitations, no
	// duplicate address detection, no link-local address.
	// Multicast listener reports cannot be turned off; make the kernel
	// send its retransmissions at once rather than over seconds.
	for k, v := range map[string]string{
		"accept_ra": "0", "router_solicitations": "0", "accept_dad": "0", "addr_gen_mode": "1",
		"mldv1_unsolicited_report_interval": "10", "mldv2_unsolicited_report_interval": "10",
	} {
		os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", decoyName, k), []byte(v), 0o644)
	}
	steps := [][]string{
		{"addr", "add", decoyAddr4.String() + "/24", "dev", decoyName},
		{"-6", "addr", "add", decoyAddr6.String() + "/64", "dev", decoyName, "nodad"},
		{"link", "set", decoyName, "up"},
		{"route", "add", "default", "via", decoyGW4.String(), "dev", decoyName},
		{"-6", "route", "add", "default", "via", decoyGW6.String(), "dev", decoyName},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	ifc, err := net.InterfaceByName(decoyName)
	if err != nil {
		return err
	}
	decoy.ifindex = ifc.Index
	if decoy.tap != nil {
		go readTap(decoy.tap)
	}
	if ifs, err = net.Interfaces(); err != nil {
		return err
	}
	for _, ifc := range ifs {
		if ifc.Name != "lo" && ifc.Name != decoyName {
			return fmt.Errorf("refusing to run: unexpected interface %q; the namespace is not private", ifc.Name)
		}
	}
	// Wait out whatever the kernel sends by itself when an interface
	// comes up (IPv6 multicast listener reports).
	last, stable := decoyTx(), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && time.Since(stable) < 700*time.Millisecond; {
		time.Sleep(50 * time.Millisecond)
		if n := decoyTx(); n != last {
			last, stable = n, time.Now()
		}
	}
	return nil
}

func findIP() (string, error) {
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("ip")
}

// openTap creates the TAP interface name and returns its packet end.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// readTap records every frame the kernel sends out through decoy0.
func readTap(f *os.File) {
	buf := make([]byte, 65536)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		s := describeFrame(buf[:n])
		decoy.mu.Lock()
		decoy.frames = append(decoy.frames, s)
		decoy.mu.Unlock()
	}
}

func decoyFrames() []string {
	decoy.mu.Lock()
	defer decoy.mu.Unlock()
	return append([]string(nil), decoy.frames...)
}

// decoyTx returns decoy0's transmit counters: packets sent, plus packets
// dropped on the way out. It reads /proc/net/dev, which shows the reading
// process's network namespace; /sys/class/net would show the host's,
// since sysfs is not remounted here.
func decoyTx() int64 {
	b, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != decoyName {
			continue
		}
		// Receive: bytes packets errs drop fifo frame compressed
		// multicast; Transmit: bytes packets errs drop …
		f := strings.Fields(rest)
		if len(f) < 12 {
			return -1
		}
		packets, _ := strconv.ParseInt(f[9], 10, 64)
		dropped, _ := strconv.ParseInt(f[11], 10, 64)
		return packets + dropped
	}
	return -1
}

// capture watches every packet on every interface of the namespace (an
// AF_PACKET socket) and collects the ones that break the loopback rule.
type capture struct {
	fd      int
	done    chan struct{}
	stopped atomic.Bool

	mu        sync.Mutex
	stats     captureStats
	offenders map[string]int // kind of offence and addresses (no ports) -> packets
}

type captureStats struct {
	Lo, Decoy  int // outgoing packets seen on each interface
	IPv4, IPv6 int
	UDP, TCP   int
	Offending  int    // packets that broke the loopback rule
	Drops      uint32 // packets the socket could not keep up with
}

func startCapture() (*capture, error) {
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Reset the drop counter: reading PACKET_STATISTICS clears it.
	unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	c := &capture{fd: fd, done: make(chan struct{}), offenders: map[string]int{}}
	go c.run()
	return c, nil
}

// waitNeighbours waits, at most max, until no address on decoy0 is being
// resolved (neighbour state INCOMPLETE), then a moment for the kernel's
// answers to pending packets to reach the capture.
func waitNeighbours(max time.Duration) {
	ipCmd, err := findIP()
	if err != nil {
		return
	}
	for deadline := time.Now().Add(max); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, err := exec.Command(ipCmd, "neigh", "show", "dev", decoyName, "nud", "incomplete").Output()
		if err != nil || len(strings.TrimSpace(string(out))) == 0 {
			break
		}
	}
	time.Sleep(50 * time.Millisecond)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *capture) run() {
	defer close(c.done)
	buf := make([]byte, 256) // headers are enough
	for !c.stopped.Load() {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // the receive timeout: look at the stop flag
		}
		if err != nil {
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			c.observe(ll, buf[:n])
		}
	}
}

// observe records one packet. On lo every packet shows up twice, going
// out and coming in; only the outgoing copy is counted.
func (c *capture) observe(ll *unix.SockaddrLinklayer, frame []byte) {
	onDecoy := int(ll.Ifindex) == decoy.ifindex
	if ll.Pkttype != unix.PACKET_OUTGOING && !onDecoy {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if onDecoy {
		c.stats.Decoy++
	} else {
		c.stats.Lo++
	}
	p := parseFrame(frame)
	switch {
	case p.v4:
		c.stats.IPv4++
	case p.v6:
		c.stats.IPv6++
	}
	switch p.proto {
	case unix.IPPROTO_UDP:
		c.stats.UDP++
	case unix.IPPROTO_TCP:
		c.stats.TCP++
	}
	var why string
	switch {
	case onDecoy:
		why = "sent toward the network (decoy0)"
	case (p.v4 || p.v6) && (!p.src.IsLoopback() || !p.dst.IsLoopback()):
		why = "non-loopback address"
	case p.srcPort == 53 || p.dstPort == 53:
		why = "DNS"
	default:
		return
	}
	c.stats.Offending++
	p.srcPort, p.dstPort = 0, 0
	c.offenders[why+": "+p.String()]++
}

// stop ends the capture and returns what it saw: statistics, and the
// offending packets grouped by kind and addresses, most frequent first.
//
// A packet for the network waits in the kernel while the gateway's
// address is resolved, and when that fails (about 3 s later) the kernel
// answers it with an ICMP "host unreachable" on lo. So stop first waits
// for every pending resolution on decoy0 to end: the answer to a packet
// sent under this capture is counted here, not in a later capture (seen:
// a DNS query of the leak detector's child, answered during
// TestInProcess).
func (c *capture) stop() (captureStats, []string) {
	waitNeighbours(10 * time.Second)
	c.stopped.Store(true)
	<-c.done
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.stats.Drops = st.Drops
	}
	var kinds []string
	for k := range c.offenders {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Or(c.offenders[b]-c.offenders[a], strings.Compare(a, b)) })
	for i, k := range kinds {
		kinds[i] = fmt.Sprintf("%4d× %s", c.offenders[k], k)
	}
	return c.stats, kinds
}

// packet is what the capture needs of a frame's headers.
type packet struct {
	etherType        uint16
	v4, v6           bool
	src, dst         netip.Addr
	proto            uint8
	srcPort, dstPort uint16
	// ICMP: type and code, and for an error the packet it answers
	icmpType, icmpCode uint8
	inner              string
}

// parseFrame reads an Ethernet frame: lo and TAP devices both carry a
// 14-byte Ethernet header.
func parseFrame(b []byte) packet {
	var p packet
	if len(b) < 14 {
		return p
	}
	p.etherType = binary.BigEndian.Uint16(b[12:14])
	ip := b[14:]
	var l4 []byte
	switch p.etherType {
	case unix.ETH_P_IP:
		if len(ip) < 20 {
			return p
		}
		p.v4 = true
		p.proto = ip[9]
		p.src = netip.AddrFrom4([4]byte(ip[12:16]))
		p.dst = netip.AddrFrom4([4]byte(ip[16:20]))
		if ihl := int(ip[0]&0xf) * 4; len(ip) >= ihl {
			l4 = ip[ihl:]
		}
	case unix.ETH_P_IPV6:
		if len(ip) < 40 {
			return p
		}
		p.v6 = true
		p.proto = ip[6]
		p.src = netip.AddrFrom16([16]byte(ip[8:24]))
		p.dst = netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:]
	}
	if (p.proto == unix.IPPROTO_UDP || p.proto == unix.IPPROTO_TCP) && len(l4) >= 4 {
		p.srcPort = binary.BigEndian.Uint16(l4[0:2])
		p.dstPort = binary.BigEndian.Uint16(l4[2:4])
	}
	if (p.proto == unix.IPPROTO_ICMP || p.proto == unix.IPPROTO_ICMPV6) && len(l4) >= 8 {
		p.icmpType, p.icmpCode = l4[0], l4[1]
		// An ICMPv4 error (unreachable 3, time exceeded 11) quotes the
		// IP header of the packet it answers: say what that was.
		if p.proto == unix.IPPROTO_ICMP && (p.icmpType == 3 || p.icmpType == 11) {
			frame := append(make([]byte, 12), byte(unix.ETH_P_IP>>8), byte(unix.ETH_P_IP&0xff))
			p.inner = parseFrame(append(frame, l4[8:]...)).String()
		}
	}
	return p
}

func (p packet) String() string {
	switch {
	case p.v4 || p.v6:
		name := map[uint8]string{unix.IPPROTO_UDP: "udp", unix.IPPROTO_TCP: "tcp", unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_ICMPV6: "icmpv6"}[p.proto]
		if name == "" {
			name = fmt.Sprintf("proto %d", p.proto)
		}
		if p.proto == unix.IPPROTO_ICMP || p.proto == unix.IPPROTO_ICMPV6 {
			s := fmt.Sprintf("%s %v → %v type %d code %d", name, p.src, p.dst, p.icmpType, p.icmpCode)
			if p.inner != "" {
				s += " answering " + p.inner
			}
			return s
		}
		if p.srcPort != 0 || p.dstPort != 0 {
			return fmt.Sprintf("%s %v → %v", name, netip.AddrPortFrom(p.src, p.srcPort), netip.AddrPortFrom(p.dst, p.dstPort))
		}
		return fmt.Sprintf("%s %v → %v", name, p.src, p.dst)
	case p.etherType == unix.ETH_P_ARP:
		return "arp"
	}
	return fmt.Sprintf("ethertype %#04x", p.etherType)
}

func describeFrame(b []byte) string { return parseFrame(b).String() }

// offlineNetwork brings up lo in a fresh namespace and checks that it is
// the only interface: a machine with no network at all.
func offlineNetwork() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifs {
		if ifc.Name != "lo" {
			return fmt.Errorf("refusing to run offline: interface %q exists", ifc.Name)
		}
	}
	ipCmd, err := findIP()
	if err != nil {
		return err
	}
	if out, err := exec.Command(ipCmd, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set lo up: %v: %s", err, out)
	}
	return nil
}

// TestCaptureWaitsForResolution checks that a capture counts the kernel's
// late answer to a packet sent under it: a datagram to an unanswered
// address on decoy0's subnet waits for ARP, which gives up after about
// 3 s and answers with ICMP "host unreachable" on lo. The datagram itself
// never leaves: decoy0's far end is this process.
func TestCaptureWaitsForResolution(t *testing.T) {
	c, err := startCapture()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp4", "192.0.2.99:9")
	if err != nil {
		c.stop()
		t.Fatal(err)
	}
	conn.Write([]byte("x"))
	conn.Close()
	t0 := time.Now()
	st, offenders := c.stop()
	t.Logf("stop waited %v; %d offending packets: %q", time.Since(t0).Round(time.Millisecond), st.Offending, offenders)
	if !slices.ContainsFunc(offenders, func(s string) bool {
		return strings.Contains(s, "type 3 code 1 answering udp") && strings.Contains(s, "192.0.2.99:9")
	}) {
		t.Errorf("no ICMP host unreachable for the datagram in the capture: %q", offenders)
	}
}
