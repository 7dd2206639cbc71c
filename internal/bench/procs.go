package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// The tsconnect binary to measure.
const (
	TSConnectAuto    = "auto"    // cmd/tsconnect if it builds and has `up --ready-file`, else the stand-in
	TSConnectCmd     = "cmd"     // cmd/tsconnect
	TSConnectStandin = "standin" // internal/bench/standin
)

const (
	pkgCmd     = "github.com/tsconnect/tsconnect/cmd/tsconnect"
	pkgStandin = "github.com/tsconnect/tsconnect/internal/bench/standin"
)

// BuildTSConnect builds the proxy binary to measure into dir and returns
// its path and the package it came from. which is one of TSConnectAuto,
// TSConnectCmd or TSConnectStandin. The build uses only the module cache:
// it runs inside the namespace, where the module proxy is out of reach.
func BuildTSConnect(dir, which string) (bin, pkg string, err error) {
	if which == TSConnectAuto || which == TSConnectCmd {
		bin = filepath.Join(dir, "tsconnect")
		err = goBuild(bin, pkgCmd)
		if err == nil {
			var help []byte
			help, err = exec.Command(bin, "help", "up").CombinedOutput()
			if err == nil && !(bytes.Contains(help, []byte("-ready-file")) && bytes.Contains(help, []byte("-listen"))) {
				err = errors.New("`tsconnect help up` lists no --ready-file or --listen flag")
			}
		}
		if err == nil || which == TSConnectCmd {
			return bin, pkgCmd, err
		}
		fmt.Fprintf(os.Stderr, "bench: using the stand-in, not cmd/tsconnect: %v\n", err)
	}
	bin = filepath.Join(dir, "standin")
	return bin, pkgStandin, goBuild(bin, pkgStandin)
}

func goBuild(out, pkg string) error {
	return tailnettest.GoBuild(out, pkg, "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOWORK=off")
}

// proc is a proxy running as a process of its own: tsconnect or tailscaled.
type proc struct {
	cmd         *exec.Cmd
	dir         string // private temporary directory, removed by stop
	logFile     string // the process's stdout and stderr
	node        string // its node name on the tailnet
	commands    []string
	exited      chan struct{}
	tailscaleUp func(ctx context.Context) error // tailscaled only: join
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// startProc starts bin with args in the namespace, logging to dir.
func startProc(dir, bin string, env []string, args ...string) (*proc, error) {
	if !tailnettest.InNamespace() {
		return nil, errors.New("bench: refusing to start a tailnet node outside the loopback-only namespace")
	}
	log, err := os.Create(filepath.Join(dir, filepath.Base(bin)+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	// The proxy must not outlive the benchmark.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, dir: dir, logFile: log.Name(), exited: make(chan struct{}),
		commands: []string{strings.Join(append([]string{filepath.Base(bin)}, args...), " ")}}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

// startTSConnect starts `tsconnect up` (or the stand-in) with its proxy on
// listen. env and extra are more environment and flags (the stand-in's
// GODEBUG and --debug-addr).
func startTSConnect(bin, dir, controlURL, key, listen, hostname, allow string, env []string, extra ...string) (*proc, error) {
	args := []string{"up", "--listen", listen, "--control-url", controlURL,
		"--ready-file", filepath.Join(dir, "ready"), "--hostname", hostname,
		// Not the default socket: other `tsconnect up`s on this machine
		// (other namespaces, same file system) may be using it.
		"--control-socket", filepath.Join(dir, "ctl.sock")}
	if allow != "" {
		args = append(args, "--allow", allow)
	}
	args = append(args, extra...)
	p, err := startProc(dir, bin, append([]string{"TS_AUTHKEY=" + key}, env...), args...)
	if p != nil {
		p.node = hostname
		p.commands[0] = "TS_AUTHKEY=… " + p.commands[0]
	}
	return p, err
}

// startTailscaled starts tailscaled in userspace-networking mode with its
// SOCKS5 and HTTP proxies on the given addresses; p.tailscaleUp joins it.
// The namespace's environment already carries TS_NO_LOGS_NO_SUPPORT,
// TS_ASSUME_NETWORK_UP_FOR_TEST and SSL_CERT_FILE (the control plane's
// self-signed certificate).
func startTailscaled(tailscaled, tailscale, dir, controlURL, key, socksAddr, httpAddr, hostname string, extra ...string) (*proc, error) {
	sock := filepath.Join(dir, "ts.sock")
	args := append([]string{"--tun=userspace-networking", "--socket=" + sock, "--statedir=" + dir,
		"--socks5-server=" + socksAddr, "--outbound-http-proxy-listen=" + httpAddr, "--port=0"}, extra...)
	p, err := startProc(dir, tailscaled, nil, args...)
	if err != nil {
		return nil, err
	}
	p.node = hostname
	upArgs := []string{"--socket=" + sock, "up", "--auth-key", key, "--login-server", controlURL, "--hostname", hostname, "--timeout", "60s"}
	p.commands = append(p.commands, "tailscale "+strings.Join(upArgs, " "))
	p.commands[1] = strings.Replace(p.commands[1], key, "…", 1)
	p.tailscaleUp = func(ctx context.Context) error {
		// tailscaled creates and serves its socket a moment after it starts.
		for {
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				break
			}
			select {
			case <-p.exited:
				return fmt.Errorf("bench: tailscaled exited at start:\n%s", p.logTail())
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
		if out, err := exec.CommandContext(ctx, tailscale, upArgs...).CombinedOutput(); err != nil {
			return fmt.Errorf("bench: tailscale up: %v\n%s", err, out)
		}
		return nil
	}
	return p, nil
}

// stop signals the process with SIGTERM and waits for it to exit (killing
// it after wait), then removes its directory. It returns how long the
// process took to exit.
func (p *proc) stop(wait time.Duration) (time.Duration, error) {
	t0 := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.exited:
	case <-time.After(wait):
		p.cmd.Process.Kill()
		<-p.exited
		err = fmt.Errorf("bench: %s did not exit within %v of SIGTERM; killed", filepath.Base(p.cmd.Path), wait)
	}
	return time.Since(t0), err
}

// logTail returns the end of the process's log, for errors.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// rss returns the resident set size of process pid (VmRSS), in bytes.
func rss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("bench: no VmRSS for pid %d", pid)
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
