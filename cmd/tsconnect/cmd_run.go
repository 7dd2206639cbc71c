package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tsconnect/tsconnect/connector"
)

const runUsage = `Usage: tsconnect run [flags] -- COMMAND [ARGS…]

Join the tailnet, start the proxy (and any --forward), run COMMAND with the
proxy in its environment, and leave the tailnet when it exits. tsconnect
exits with COMMAND's status.

COMMAND gets tsconnect's environment with ALL_PROXY (socks5h://, so names
resolve inside the tailnet), HTTP_PROXY, HTTPS_PROXY, their lower-case twins
and NO_PROXY set, and with the auth key and every Vault credential
(TS_AUTHKEY, TS_AUTH_KEY, VAULT_*, BAO_*, TSCONNECT_VAULT_*, …) removed.
With --isolate=netns it gets no proxy variables: it runs in a network
namespace whose only way out is tsconnect, names resolve inside the tailnet
there, and every TCP connection is allowed or refused (RST) by the
allowlist and audited. Its stdin, stdout and stderr are tsconnect's. SIGINT and SIGTERM are passed on to it;
the node leaves the tailnet however COMMAND ends.

Examples:
  # Reach grafana through the proxy; nothing else on the tailnet.
  TS_AUTHKEY=tskey-auth-… tsconnect run --allow grafana.corp.ts.net -- \
      curl -sS http://grafana/api/health

  # An agent with a database port for psql, key from a mounted secret.
  tsconnect run --auth-key-file /run/secrets/ts-key --tags tag:sandbox \
      --allow .corp.ts.net --forward 5432=db:5432 -- \
      python agent.py

  # Key from Vault (KV v2 secret/tailscale, field authkey) with AppRole.
  VAULT_ADDR=https://vault:8200 TSCONNECT_VAULT_SECRET_ID=… \
  tsconnect run --vault-path secret/tailscale --vault-auth approle \
      --vault-role-id 1f2e… --allow .corp.ts.net -- ./agent

  # psql and ssh, which ignore proxies, by name: under --isolate=netns the
  # command's only network is tsconnect, which decides every connection.
  tsconnect run --isolate=netns --allow db.corp.ts.net:5432,git.corp.ts.net:22 -- \
      sh -c 'psql -h db -c "select 1" && ssh git@git uptime'

  # A headscale control plane, audit log on stderr.
  tsconnect run --control-url https://headscale.example.com \
      --audit-log - --allow .corp.example.com -- ./agent
`

func cmdRun(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("run", runUsage)
	jo := addJoinFlags(fs)
	po := addProxyFlags(fs)
	childFlags := addChildFlags(fs)
	if code, done := fs.parse(args, sio); done {
		return code
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return sio.fail(usageErrorf("run", "no command to run: tsconnect run [flags] -- COMMAND [ARGS…]"))
	}
	child, err := lookupChild("run", childFlags)
	if err != nil {
		return sio.fail(err)
	}
	cfg, err := jo.config(fs, sio)
	if err != nil {
		return sio.fail(err)
	}
	fwds, auditCloser, err := po.apply("run", &cfg, sio)
	if err != nil {
		return sio.fail(err)
	}
	defer auditCloser.Close()
	path, err := lookCommand(argv[0])
	if err != nil {
		return sio.fail(err)
	}
	listeners, err := listenForwards(fwds)
	if err != nil {
		return sio.fail(err)
	}
	defer closeForwards(listeners)

	sigc, stopSignals := notifySignals()
	defer stopSignals()
	s, code := join(ctx, cfg, jo.verbose, sigc, sio)
	if s == nil {
		return code
	}
	defer s.closeOnPanic()
	defer po.serveMetrics(s)()
	if os.Geteuid() == 0 && child.user == nil {
		// PR_SET_DUMPABLE does not bind a process with CAP_SYS_PTRACE.
		sio.logf("warning: %s runs as root, as tsconnect does, so it may read tsconnect's memory (/proc/%d/mem), the auth key with it; as any other user it could not (tsconnect is undumpable): use --child-user nobody, run tsconnect as a user other than root, or give it a single-use key (README, \"Security model\")", argv[0], os.Getpid())
	}
	code = runChild(ctx, s, listeners, path, argv, child, sigc, sio)
	if sig := s.close(sigc); sig != nil {
		return signalExit(sig)
	}
	return code
}

// runChild starts the forwards and the command, passes signals on, and
// returns the command's exit status. The caller closes the session.
func runChild(ctx context.Context, s *session, fwds []*forward, path string, argv []string, co childOpts, sigc <-chan os.Signal, sio stdio) int {
	fw, err := startForwards(s, fwds)
	if err != nil {
		return sio.fail(err)
	}
	defer fw.Close()

	// Not exec.CommandContext: the command is stopped by passing signals
	// on, and the exit status must be its own.
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	var iso *connector.IsolatedCmd // --isolate=netns
	switch co.isolate {
	case isolateLandlock:
		ports := []int{s.proxyPort()}
		for _, l := range fwds {
			ports = append(ports, l.port())
		}
		shim, args, err := landlockCommand(ports, path, argv)
		if err != nil {
			return sio.fail(&exitError{code: exitCannotExec, err: err})
		}
		cmd = &exec.Cmd{Path: shim, Args: args}
	case isolateNetns:
		if iso, err = s.c.IsolatedCommand(co.netns, co.user, argv[0], argv[1:]...); err != nil {
			return sio.fail(&exitError{code: exitCannotExec, err: err})
		}
		cmd = iso.Cmd
	}
	if iso == nil {
		cmd.Env = s.c.Environ(nil)
	}
	if child := co.user; child != nil {
		if iso == nil { // the shim takes the user itself, after setting up
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: child.Credential}
		}
		cmd.Env = childEnv(cmd.Env, child)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sio.In, sio.Out, sio.Err
	// When the streams are not files (in-process callers), do not hang on a
	// grandchild that keeps them open.
	cmd.WaitDelay = 2 * time.Second
	start, wait := cmd.Start, cmd.Wait
	if iso != nil {
		start, wait = iso.Start, iso.Wait
	}
	if err := start(); err != nil {
		return sio.fail(&exitError{code: exitCannotExec, err: err})
	}
	waitc := make(chan error, 1)
	go func() { waitc <- wait() }()

	ctxDone, nodeDone := ctx.Done(), s.c.Done()
	for {
		select {
		case sig := <-sigc:
			if s.verbose {
				sio.logf("passing %v on to %s (pid %d)", sig, argv[0], cmd.Process.Pid)
			}
			cmd.Process.Signal(sig)
		case <-ctxDone:
			ctxDone = nil
			cmd.Process.Signal(syscall.SIGTERM)
		case <-nodeDone:
			nodeDone = nil
			sio.logf("warning: the tailnet node stopped: the proxy is gone; %s keeps running", argv[0])
		case err := <-waitc:
			// A signal that arrived with the command's exit (a Ctrl-C
			// reaches both from the terminal) was meant for the command:
			// it must not read as a second signal and cut leaving short.
			for len(sigc) > 0 {
				<-sigc
			}
			return exitStatus(cmd.ProcessState, err, sio)
		}
	}
}

// exitStatus is the command's exit code, or 128+N if signal N killed it.
func exitStatus(ps *os.ProcessState, err error, sio stdio) int {
	if ps == nil {
		return sio.fail(fmt.Errorf("waiting for the command: %w", err))
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && ps.Success() {
		// exec.ErrWaitDelay: the command succeeded but left its streams
		// open; that is not its failure.
		return exitOK
	}
	return ps.ExitCode()
}

// childFlags are the flags of the subcommands that run a command.
type childFlags struct{ user, isolate, deniedDNS string }

// childOpts is what they say, checked before joining.
type childOpts struct {
	user    *connector.ChildUser // nil: tsconnect's own
	isolate string               // the tier: "", isolateNetns or isolateLandlock
	netns   connector.IsolateOptions
}

// addChildFlags adds --child-user and --isolate.
func addChildFlags(fs *flagSet) *childFlags {
	f := new(childFlags)
	fs.StringVar(&f.user, "child-user", "", "run the command as `USER[:GROUP]` (names or ids; tsconnect must be root): it\nthen holds no capabilities and cannot read tsconnect's memory, the key with it")
	fs.StringVar(&f.isolate, "isolate", "", "`TIER`: make it impossible for the command to bypass the allowlist, even if\nit ignores the proxy variables. netns: it runs in a network namespace\nwhose only way out is tsconnect (its names resolve inside the tailnet,\nevery TCP connection is decided and audited; needs root, or user\nnamespaces and a usable /dev/net/tun). landlock: its TCP connect()\nreaches only the proxy's and the forwards' ports (Linux 6.7+; UDP not\ncovered). auto: the best tier this machine has. 'tsconnect check\n--isolate' says which work here")
	fs.StringVar(&f.deniedDNS, "isolate-deny-dns", "nxdomain", "with --isolate=netns, the namespace's DNS answer for a name the allowlist\ndenies: `nxdomain` (tools fail at once, as for a name that does not exist)\nor refused")
	fs.section("Command")
	return f
}

// lookupChild checks the flags before joining: --child-user resolved,
// --isolate available.
func lookupChild(sub string, f *childFlags) (childOpts, error) {
	var co childOpts
	tier, err := resolveIsolate(sub, f.isolate)
	if err != nil {
		return co, err
	}
	co.isolate = tier
	switch f.deniedDNS {
	case "nxdomain", "":
	case "refused":
		co.netns.DeniedRcode = dnsmessage.RCodeRefused
	default:
		return co, usageErrorf(sub, "--isolate-deny-dns %q: want nxdomain or refused", f.deniedDNS)
	}
	if f.user == "" {
		return co, nil
	}
	cu, err := connector.LookupChildUser(f.user)
	if err != nil {
		return co, usageErrorf(sub, "--child-user: %s", message(err))
	}
	if os.Geteuid() != 0 && cu.Credential.Uid != uint32(os.Geteuid()) {
		return co, usageErrorf(sub, "--child-user %s: starting a command as another user needs tsconnect to run as root", f.user)
	}
	co.user = &cu
	return co, nil
}

// childEnv sets USER, LOGNAME and HOME to the child user's, when the user
// database names them.
func childEnv(env []string, cu *connector.ChildUser) []string {
	set := map[string]string{}
	if cu.Name != "" {
		set["USER"], set["LOGNAME"] = cu.Name, cu.Name
	}
	if cu.Home != "" {
		set["HOME"] = cu.Home
	}
	out := env[:0:0]
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); set[name] == "" {
			out = append(out, kv)
		}
	}
	for name, v := range set {
		out = append(out, name+"="+v)
	}
	return out
}
