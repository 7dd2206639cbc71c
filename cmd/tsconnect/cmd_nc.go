package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"
)

const ncUsage = `Usage: tsconnect nc [--proxy URL] HOST:PORT

Connect standard input and output to HOST:PORT through a running
tsconnect's proxy — the one ALL_PROXY names, which 'tsconnect run' and
'tsconnect up --env-file' set — so the allowlist, the audit log and the
check inside tunnels apply as to any proxied connection. For programs that
take a command as their transport and ignore proxy variables (ssh, git over
ssh). HOST is resolved inside the tailnet (a MagicDNS short name works), so
ssh checks the host key of the name it asked for.

It joins nothing and holds no key: it is a SOCKS5 client. Proxy
credentials, if the proxy wants them, come from the URL
(socks5h://user:password@127.0.0.1:1055).

Examples:
  tsconnect run --allow gitbox.corp.ts.net:22 -- \
      ssh -o ProxyCommand='tsconnect nc %h:%p' git@gitbox uptime
  GIT_SSH_COMMAND="ssh -o ProxyCommand='tsconnect nc %h:%p'" git clone git@gitbox:repo

Exit status: 0 when the connection ends; 1 if the proxy refuses or cannot
reach HOST:PORT (the message says which); 2 for a usage error or no proxy.
`

func cmdNC(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("nc", ncUsage)
	var proxyURL string
	fs.StringVar(&proxyURL, "proxy", "", "the proxy `URL` (socks5h://host:port); default $ALL_PROXY, else $all_proxy")
	fs.section("Flags")
	if code, done := fs.parse(args, sio); done {
		return code
	}
	if fs.NArg() != 1 {
		return sio.fail(usageErrorf("nc", "want one HOST:PORT, got %d arguments", fs.NArg()))
	}
	target := fs.Arg(0)
	host, portStr, err := net.SplitHostPort(target)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || host == "" || port == 0 || len(host) > 255 {
		return sio.fail(usageErrorf("nc", "%q: want HOST:PORT, e.g. gitbox:22", target))
	}
	if proxyURL == "" {
		proxyURL = os.Getenv("ALL_PROXY")
	}
	if proxyURL == "" {
		proxyURL = os.Getenv("all_proxy")
	}
	if proxyURL == "" {
		return sio.fail(&exitError{code: exitUsage, err: errors.New("no proxy: ALL_PROXY is not set"),
			hint: "run it under 'tsconnect run' (which sets ALL_PROXY), or pass --proxy socks5h://127.0.0.1:1055"})
	}
	u, err := url.Parse(proxyURL)
	if err != nil || (u.Scheme != "socks5h" && u.Scheme != "socks5") || u.Host == "" {
		return sio.fail(usageErrorf("nc", "proxy %q: want socks5h://host:port", proxyURL))
	}
	conn, err := socks5Connect(ctx, u, host, uint16(port))
	if err != nil {
		return sio.fail(&exitError{code: exitFailure, err: fmt.Errorf("%s: %w", target, err)})
	}
	// Standard input to the target, half-closing it at EOF; the target to
	// standard output. The connection's end ends the command, as ssh wants
	// of a ProxyCommand.
	go func() {
		io.Copy(conn, sio.In)
		conn.CloseWrite()
	}()
	if _, err := io.Copy(sio.Out, conn); err != nil && !errors.Is(err, net.ErrClosed) {
		conn.Close()
		return sio.fail(&exitError{code: exitFailure, err: fmt.Errorf("%s: %w", target, err)})
	}
	conn.Close()
	return exitOK
}

// socks5Replies are SOCKS5's reply codes (RFC 1928), as nc reports them.
var socks5Replies = map[byte]string{
	1: "the proxy failed (general failure; it may be at its connection limit)",
	2: "not allowed by the proxy's allowlist",
	3: "network unreachable", 4: "host unreachable (not on the tailnet, or it does not resolve)",
	5: "connection refused by the target", 6: "timed out", 7: "command not supported", 8: "address type not supported",
}

// socks5Connect opens a SOCKS5 CONNECT tunnel to host:port through the
// proxy at u, with u's user and password if it has them. host goes to the
// proxy as a name, to be resolved there.
func socks5Connect(ctx context.Context, u *url.URL, host string, port uint16) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 15 * time.Second}
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the proxy at %s: %w", u.Host, err)
	}
	conn := c.(*net.TCPConn)
	fail := func(err error) (*net.TCPConn, error) { conn.Close(); return nil, err }
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	method := byte(0)
	if u.User != nil {
		method = 2
	}
	if _, err := conn.Write([]byte{5, 1, method}); err != nil {
		return fail(err)
	}
	var b [2]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return fail(fmt.Errorf("the proxy at %s did not answer SOCKS5: %w", u.Host, err))
	}
	if b[0] != 5 || b[1] != method {
		return fail(fmt.Errorf("the proxy at %s refused the SOCKS5 greeting (method %#x)", u.Host, b[1]))
	}
	if method == 2 {
		user := u.User.Username()
		pass, _ := u.User.Password()
		msg := append(append([]byte{1, byte(len(user))}, user...), byte(len(pass)))
		if _, err := conn.Write(append(msg, pass...)); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(conn, b[:]); err != nil || b[1] != 0 {
			return fail(errors.New("the proxy refused its user and password"))
		}
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	if _, err := conn.Write(binary.BigEndian.AppendUint16(req, port)); err != nil {
		return fail(err)
	}
	var rep [4]byte
	if _, err := io.ReadFull(conn, rep[:]); err != nil {
		return fail(fmt.Errorf("the proxy closed the connection: %w", err))
	}
	if rep[1] != 0 {
		why, ok := socks5Replies[rep[1]]
		if !ok {
			why = "refused"
		}
		return fail(fmt.Errorf("%s (SOCKS5 reply %d)", why, rep[1]))
	}
	skip := map[byte]int{1: 4, 4: 16}[rep[3]] + 2 // BND.ADDR, BND.PORT
	if rep[3] == 3 {
		var n [1]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return fail(err)
		}
		skip = int(n[0]) + 2
	}
	if _, err := io.ReadFull(conn, make([]byte, skip)); err != nil {
		return fail(err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}
