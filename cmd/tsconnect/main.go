// Command tsconnect gives an AI agent's sandbox a narrow door into a
// tailnet: an ephemeral, userspace tailnet node and a local SOCKS5 + HTTP
// proxy (one port, 127.0.0.1:1055 by default) that reaches only the hosts
// an allowlist names.
//
// The auth key comes from the environment, a file or Vault; it is never
// written to disk, never accepted as a flag (it would show in ps) and never
// handed to a child process. The node logs out when tsconnect exits, so it
// leaves the control plane's machine list at once.
//
// This package is the user interface only: flags, messages, exit codes,
// signals and child processes. The connector package does the work.
//
// Run `tsconnect help` for the subcommands, flags and exit codes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/tsconnect/tsconnect/connector"
)

// Exit codes. They are part of the interface: scripts branch on them, and
// `tsconnect help` lists them.
const (
	exitOK          = 0 // success
	exitFailure     = 1 // any other failure
	exitUsage       = 2 // bad command line or flag (or TSCONNECT_*) value
	exitAuth        = 3 // the auth key is missing, unreadable or rejected, or login is needed
	exitUnreachable = 4 // the control plane did not answer in time
	exitCheckFailed = 5 // check: a target is denied by policy or unreachable
	exitCannotExec  = 126
	exitNotFound    = 127
)

// version is set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/tsconnect
var version = "dev"

func main() {
	// run --isolate=netns's shim: it returns only if this is not one. The
	// shims get no secret, and the netns relay must stay dumpable.
	connector.IsolationShim()
	if shim := len(os.Args) > 1 && os.Args[1] == landlockExecArg; !shim {
		// Before harden: an undumpable process's /proc/self/mem is
		// root's, so any other user could not open it to wipe.
		if err := wipeInitialEnviron(); err != nil {
			fmt.Fprintf(os.Stderr, "tsconnect: warning: cannot clear secrets from /proc/%d/environ: %v\n", os.Getpid(), err)
		}
		if err := harden(); err != nil {
			fmt.Fprintf(os.Stderr, "tsconnect: warning: cannot disable core dumps: %v\n", err)
		}
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// stdio is a command's standard streams. Err is safe for concurrent use:
// progress lines, the audit log (--audit-log -) and verbose tsnet logs
// all go there.
type stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, sio stdio) int
}

// commands is the subcommand table; `help` lists it in this order.
var commands = []command{
	{"run", "join, start the proxy and run a command that uses it", cmdRun},
	{"up", "join and serve the proxy in the foreground until interrupted", cmdUp},
	{"check", "join and test whether targets are allowed and reachable", cmdCheck},
	{"status", "show what a running `tsconnect up` is doing", cmdStatus},
	{"policy", "test a policy file offline, or explain a decision", cmdPolicy},
	{"nc", "connect stdin and stdout to HOST:PORT through the proxy (ssh ProxyCommand)", cmdNC},
	{"version", "print the version of tsconnect, Go and tailscale.com", cmdVersion},
	{"demo", "try tsconnect against a throwaway in-process tailnet", runDemo},
	// help is added by init: it reads this table.
}

func init() {
	commands = append(commands, command{"help", "show help for tsconnect or a subcommand", cmdHelp})
}

func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// run is the whole program: main only adds the process's streams and exits
// with the result, so tests can call it in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	sio := stdio{In: stdin, Out: stdout, Err: &lockedWriter{w: stderr}}
	if len(args) == 0 {
		fmt.Fprint(sio.Err, mainUsage())
		return sio.fail(usageErrorf("", "no subcommand given"))
	}
	switch args[0] {
	case landlockExecArg: // run --isolate=landlock's shim, not a subcommand for people
		return landlockExec(args[1:], sio)
	case "-h", "-help", "--help":
		fmt.Fprint(sio.Out, mainUsage())
		return exitOK
	case "-version", "--version":
		return cmdVersion(ctx, nil, sio)
	}
	cmd, ok := findCommand(args[0])
	if !ok {
		if strings.HasPrefix(args[0], "-") {
			return sio.fail(usageErrorf("", "flag %s before the subcommand: flags follow it, as in `tsconnect run %s …`", args[0], args[0]))
		}
		return sio.fail(usageErrorf("", "unknown subcommand %q", args[0]))
	}
	return cmd.run(ctx, args[1:], sio)
}

func cmdHelp(ctx context.Context, args []string, sio stdio) int {
	if len(args) == 0 {
		fmt.Fprint(sio.Out, mainUsage())
		return exitOK
	}
	if len(args) > 1 {
		return sio.fail(usageErrorf("help", "help takes at most one subcommand"))
	}
	cmd, ok := findCommand(args[0])
	if !ok {
		return sio.fail(usageErrorf("", "unknown subcommand %q", args[0]))
	}
	if cmd.name == "help" {
		fmt.Fprint(sio.Out, mainUsage())
		return exitOK
	}
	return cmd.run(ctx, []string{"--help"}, sio)
}

const mainUsageHead = `tsconnect gives a sandbox a narrow door into a tailnet: an ephemeral,
userspace tailnet node and a local SOCKS5 + HTTP proxy that reaches only the
hosts an allowlist names. The node leaves the tailnet when tsconnect exits.

Usage:
  tsconnect <subcommand> [flags] [args]

Subcommands:
`

const mainUsageTail = `
Examples:
  # Run an agent's tool with the proxy in its environment (ALL_PROXY,
  # HTTP(S)_PROXY); it can reach grafana and the database, nothing else.
  export TS_AUTHKEY=tskey-auth-…   # or --auth-key-file, or Vault
  tsconnect run --allow grafana.corp.ts.net,db.corp.ts.net:5432 -- \
      curl -sS http://grafana/api/health

  # Serve the proxy for a whole session, and a port for psql.
  tsconnect up --allow .corp.ts.net --forward 5432=db:5432 --env-file /tmp/ts.env &
  . /tmp/ts.env; tsconnect status

  # Is everything the agent needs allowed and reachable?
  tsconnect check --allow .corp.ts.net https://grafana/login db:5432

The auth key:
  TS_AUTHKEY, else TS_AUTH_KEY; or --auth-key-file FILE; or Vault with
  --vault-path secret/tailscale (VAULT_ADDR, VAULT_TOKEN, … as the vault CLI).
  A key or token is never accepted as a flag value: it would show in ps.

Environment:
  Every flag --some-flag can also be set as TSCONNECT_SOME_FLAG (-v as
  TSCONNECT_VERBOSE); a flag on the command line wins. Standard names are
  read too: TS_AUTHKEY, TS_AUTH_KEY, TS_CONTROL_URL, VAULT_ADDR, VAULT_TOKEN,
  VAULT_NAMESPACE, VAULT_CACERT.

Exit status:
  0    success
  1    failure
  2    usage: a bad command line, flag or TSCONNECT_* value
  3    auth: the key is missing, unreadable or rejected, or login is needed
  4    the control plane did not answer in time (--timeout)
  5    check: a target is denied by the allowlist or unreachable
  run  exits with the command's own status (128+N if killed by signal N;
       127 if the command is not found, 126 if it cannot be started)

Run 'tsconnect <subcommand> --help' for its flags and examples.
`

func mainUsage() string {
	var b strings.Builder
	b.WriteString(mainUsageHead)
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.name, c.summary)
	}
	b.WriteString(mainUsageTail)
	return b.String()
}

// lockedWriter serializes writes to a shared stream.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logf prints a progress or warning line for people on stderr.
func (sio stdio) logf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	fmt.Fprintf(sio.Err, "tsconnect: %s\n", msg)
}
