package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ColTSConnectIsolate is tsconnect run --isolate=netns: the client's
// connections come from inside the command's network namespace, through
// tsconnect's TUN device, with no proxy protocol at all.
const ColTSConnectIsolate = "tsconnect-isolate"

// isolateThreads is how many threads of the benchmark process join the
// namespace to make the client's sockets there.
const isolateThreads = 16

// startIsolated starts `tsconnect run --isolate=netns` whose command writes
// what the namespace's resolver answers for the bench server's name, then
// sleeps until it is stopped, and returns the process and a dialer from
// inside that namespace to that address (stop ends the dialer's threads).
func startIsolated(ctx context.Context, bin, dir, controlURL, key, hostname, target string, extra ...string) (p *proc, dial Dialer, stop func(), err error) {
	host, port, _ := net.SplitHostPort(target)
	addrFile := filepath.Join(dir, "addr")
	args := append([]string{"run", "--isolate=netns", "--listen", "127.0.0.1:0", "--control-url", controlURL,
		"--hostname", hostname, "--allow", target}, extra...)
	args = append(args, "--", "sh", "-c", `getent hosts "$0" > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 1000000`, host, addrFile)
	if p, err = startProc(dir, bin, []string{"TS_AUTHKEY=" + key}, args...); err != nil {
		return nil, nil, nil, err
	}
	p.node = hostname
	p.commands[0] = "TS_AUTHKEY=… " + p.commands[0]
	addr, err := resolvedAddr(ctx, p, addrFile, host)
	if err != nil {
		return p, nil, nil, err
	}
	child, err := isolatedChild(p.pid())
	if err != nil {
		return p, nil, nil, err
	}
	dial, stop, err = netnsDialer(child, net.JoinHostPort(addr, port))
	return p, dial, stop, err
}

// resolvedAddr waits for the command of p to write what the namespace's
// resolver said of host to file, and returns the address.
func resolvedAddr(ctx context.Context, p *proc, file, host string) (string, error) {
	for {
		if b, err := os.ReadFile(file); err == nil {
			f := strings.Fields(string(b))
			if len(f) == 0 {
				return "", fmt.Errorf("bench: the namespace's resolver gave %s no address", host)
			}
			return f[0], nil
		}
		select {
		case <-p.exited:
			return "", fmt.Errorf("bench: tsconnect run --isolate exited at start:\n%s", p.logTail())
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// netnsDialer dials addr from the network namespace of process pid: a few
// goroutines, each locked to a thread that joined that namespace (the
// threads end with the goroutines, when stop is called), make the sockets;
// a socket stays in the namespace it was made in.
func netnsDialer(pid int, addr string) (dial Dialer, stop func(), err error) {
	type answer struct {
		c   net.Conn
		err error
	}
	type request struct {
		ctx   context.Context
		reply chan answer
	}
	reqs := make(chan request)
	errc := make(chan error, isolateThreads)
	ns := fmt.Sprintf("/proc/%d/ns/net", pid)
	for range isolateThreads {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread is not reused
			fd, err := unix.Open(ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				err = unix.Setns(fd, unix.CLONE_NEWNET)
				unix.Close(fd)
			}
			errc <- err
			if err != nil {
				return
			}
			for rq := range reqs {
				c, err := netDialer.DialContext(rq.ctx, "tcp", addr)
				rq.reply <- answer{c, err}
			}
		}()
	}
	for range isolateThreads {
		if e := <-errc; e != nil && err == nil {
			err = fmt.Errorf("bench: joining %s: %w", ns, e)
		}
	}
	if err != nil {
		close(reqs)
		return nil, nil, err
	}
	dial = func(ctx context.Context) (net.Conn, error) {
		rq := request{ctx, make(chan answer, 1)}
		select {
		case reqs <- rq:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		a := <-rq.reply
		return a.c, a.err
	}
	return dial, func() { close(reqs) }, nil
}

// isolatedChild is the pid of the command tsconnect (pid) runs: its only
// child, which any of its threads may have started.
func isolatedChild(pid int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return 0, err
	}
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			return strconv.Atoi(f)
		}
	}
	return 0, errors.New("bench: tsconnect run --isolate has no child")
}
