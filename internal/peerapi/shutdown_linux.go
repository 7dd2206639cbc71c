package peerapi

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ShutdownHost shuts down this process's TCP sockets listening on every
// interface (0.0.0.0 or ::) on the port of one of a node's peer API URLs
// (ipnstate's PeerStatus.PeerAPIURL), and returns how many it shut.
// Sockets on a specific address are left alone: the peer API's is the only
// wildcard one a node opens, and a program's own listeners on those ports
// would not be on a port the kernel gave the node.
func ShutdownHost(peerAPIURLs []string) (int, error) {
	ports := ports(peerAPIURLs)
	if len(ports) == 0 {
		return 0, nil
	}
	inodes, err := listening("/proc/self", func(ap netip.AddrPort) bool {
		return ap.Addr().IsUnspecified() && ports[ap.Port()]
	})
	if err != nil || len(inodes) == 0 {
		return 0, err
	}
	fds, err := socketFDs("/proc/self")
	if err != nil {
		return 0, err
	}
	n := 0
	for inode := range inodes {
		for _, fd := range fds[inode] {
			if err := unix.Shutdown(fd, unix.SHUT_RD); err != nil {
				return n, fmt.Errorf("peerapi: shutting down the host listener: %w", err)
			}
			n++
		}
	}
	return n, nil
}

// listening returns the TCP listening sockets in proc's network namespace
// (proc is "/proc/self" or "/proc/<pid>") that keep returns true for, by
// socket inode.
func listening(proc string, keep func(netip.AddrPort) bool) (map[string]netip.AddrPort, error) {
	out := map[string]netip.AddrPort{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(proc, "net", f))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(line)
			if len(fields) < 10 || fields[3] != "0A" {
				continue
			}
			ap, err := ParseProcAddr(fields[1])
			if err != nil {
				return nil, fmt.Errorf("%s/net/%s: %q: %v", proc, f, fields[1], err)
			}
			if keep == nil || keep(ap) {
				out[fields[9]] = ap
			}
		}
	}
	return out, nil
}

// socketFDs maps socket inodes to the descriptors of proc that hold them.
func socketFDs(proc string) (map[string][]int, error) {
	ents, err := os.ReadDir(filepath.Join(proc, "fd"))
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(proc, "fd", e.Name()))
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		inode := strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")
		out[inode] = append(out[inode], fd)
	}
	return out, nil
}

// ProcessListeners returns the TCP addresses process proc listens on: the
// listening sockets of its namespace that it holds a descriptor of.
func ProcessListeners(proc string) ([]netip.AddrPort, error) {
	all, err := listening(proc, nil)
	if err != nil {
		return nil, err
	}
	fds, err := socketFDs(proc)
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for inode, ap := range all {
		if len(fds[inode]) > 0 {
			out = append(out, ap)
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out, nil
}

// ParseProcAddr reads /proc/net/tcp's "0100007F:1F90": the address as
// 32-bit words in host (little-endian) order, the port in hex.
func ParseProcAddr(s string) (netip.AddrPort, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("no port")
	}
	raw, err := hex.DecodeString(hexIP)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address")
	}
	for i := 0; i < len(raw); i += 4 {
		slices.Reverse(raw[i : i+4])
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
