package socks

import (
	"encoding/binary"
	"net"
	"sync"
	"syscall"
)

// peerUID is the uid owning the other end of c, a TCP connection from a
// process on this machine (a loopback address), asked of the kernel's
// socket diagnostics (NETLINK_SOCK_DIAG, inet_diag: one lookup by the
// exact 4-tuple, the way ss finds a socket). ok is false for any other
// connection, or when the kernel does not answer.
func peerUID(c net.Conn) (uid uint32, ok bool) {
	ra, ok1 := c.RemoteAddr().(*net.TCPAddr)
	la, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || !ra.IP.IsLoopback() {
		return 0, false
	}
	family := uint8(syscall.AF_INET)
	src, dst := ra.IP.To4(), la.IP.To4()
	if src == nil || dst == nil {
		family, src, dst = syscall.AF_INET6, ra.IP.To16(), la.IP.To16()
	}
	diag.mu.Lock()
	defer diag.mu.Unlock()
	if !diag.open {
		fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
		if err != nil {
			return 0, false
		}
		tv := syscall.Timeval{Usec: 100_000}
		syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
		diag.fd, diag.open = fd, true
	}
	fd := diag.fd
	diag.seq++

	// nlmsghdr (16) + inet_diag_req_v2 (56): the client's socket is the one
	// whose source is the connection's remote end.
	const sockDiagByFamily = 20
	req := make([]byte, 16+56)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], syscall.NLM_F_REQUEST)
	ne.PutUint32(req[8:], diag.seq)
	r := req[16:]
	r[0], r[1] = family, syscall.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], uint16(ra.Port))
	binary.BigEndian.PutUint16(id[2:], uint16(la.Port))
	copy(id[4:20], src)
	copy(id[20:36], dst)
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, false
	}
	buf := diag.buf[:]
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil || n < 16 {
			// A timeout may leave an answer queued: start afresh next time.
			syscall.Close(fd)
			diag.open = false
			return 0, false
		}
		if ne.Uint32(buf[8:]) != diag.seq {
			continue // a late answer to an earlier question
		}
		// nlmsghdr, then inet_diag_msg: family, state, timer, retrans, the
		// 48-byte id, expires, rqueue, wqueue, uid (offset 64), inode.
		if n < 16+72 || ne.Uint16(buf[4:]) != sockDiagByFamily {
			return 0, false // NLMSG_ERROR: no such socket
		}
		return ne.Uint32(buf[16+64:]), true
	}
}

// diag is the netlink socket peerUID asks, opened on first use and kept:
// one request and one answer per accepted connection.
var diag struct {
	mu   sync.Mutex
	open bool
	fd   int
	seq  uint32
	buf  [4096]byte
}
