package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTeardownLeavesNothing: however a session ends — the command exits,
// crashes or is killed; tsconnect gets SIGINT or SIGTERM; `up` is stopped
// — the node leaves the machine list within 2 s and tsconnect leaves no
// file behind in TMPDIR or HOME (its private temp dir, the control
// socket, nothing in a cache).
func TestTeardownLeavesNothing(t *testing.T) {
	tn := newTailnet(t, "")
	for _, tc := range []struct {
		name string
		args []string // after the subcommand's flags
		up   bool     // `up` instead of `run`
		// act ends the session once the child printed "child-ready"
		// (run) or tsconnect printed "ready" (up); nil: it ends by itself.
		act  func(p *proc, childPID int)
		code int
	}{
		{name: "child exits", args: []string{"--", "sh", "-c", "echo child-ready; exit 3"}, code: 3},
		{name: "child crashes", args: []string{"--", "sh", "-c", "echo child-ready; kill -SEGV $$"}, code: 128 + int(syscall.SIGSEGV)},
		{name: "child killed", args: []string{"--", "sh", "-c", "echo child-ready $$; exec sleep 30"},
			act: func(p *proc, pid int) { syscall.Kill(pid, syscall.SIGKILL) }, code: 128 + int(syscall.SIGKILL)},
		{name: "SIGTERM", args: []string{"--", "sh", "-c", "echo child-ready $$; exec sleep 30"},
			act: func(p *proc, _ int) { p.cmd.Process.Signal(syscall.SIGTERM) }, code: 128 + int(syscall.SIGTERM)},
		{name: "SIGINT", args: []string{"--", "sh", "-c", "echo child-ready $$; exec sleep 30"},
			act: func(p *proc, _ int) { p.cmd.Process.Signal(syscall.SIGINT) }, code: 128 + int(syscall.SIGINT)},
		{name: "up SIGTERM", up: true, act: func(p *proc, _ int) { p.cmd.Process.Signal(syscall.SIGTERM) }, code: 0},
		{name: "up SIGINT", up: true, act: func(p *proc, _ int) { p.cmd.Process.Signal(syscall.SIGINT) }, code: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp, home := t.TempDir(), t.TempDir()
			name := "teardown-" + strings.ReplaceAll(tc.name, " ", "-")
			sub := "run"
			if tc.up {
				sub = "up"
			}
			args := append([]string{sub, "--hostname", name, "--listen", "127.0.0.1:0"}, tc.args...)
			p := startTsc(t, tn.env("TMPDIR="+tmp, "HOME="+home), args...)
			var since time.Time
			if tc.up {
				p.waitOutput(p.stderr, "(?m)^ready$", 60*time.Second)
			} else {
				m := p.waitOutput(p.stdout, `child-ready ?(\d*)`, 60*time.Second)
				pid, _ := strconv.Atoi(m[1])
				if tc.act != nil && pid == 0 {
					t.Fatal("no child pid")
				}
				since = time.Now()
				if tc.act != nil {
					tc.act(p, pid)
				}
			}
			if tc.up {
				since = time.Now()
				tc.act(p, 0)
			}
			if code := p.wait(15 * time.Second); code != tc.code {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, tc.code, p.stderr)
			}
			tn.waitGone(t, name, since, tc.name)
			for _, dir := range []string{tmp, home} {
				if left := filesUnder(t, dir); len(left) > 0 {
					t.Errorf("left behind in %s: %q", dir, left)
				}
			}
		})
	}
}

// TestPrivateDirEmpty: the wrapped command, same uid, finds nothing of the
// node's in tsconnect's private directory while the node runs: tsnet's log
// buffers and log configuration are unlinked once it has opened them, and
// an empty file keeps tsnet from making its network map cache. A child that
// is not root cannot reach them through /proc/<pid>/fd either (the process
// is undumpable); a root one can, which these tests, run as root, cannot
// show.
func TestPrivateDirEmpty(t *testing.T) {
	tn := newTailnet(t, "")
	tmp := t.TempDir()
	p := tsc(t, tn.env("TMPDIR="+tmp, "HOME="+t.TempDir()), "run", "--listen", "127.0.0.1:0", "--",
		"sh", "-c", `cd "$TMPDIR" && find . -type f -printf '%p %s bytes\n' -o -printf '%p\n' | sort`)
	if p.code != 0 {
		t.Fatalf("exit %d\n%s", p.code, p.stderr)
	}
	if !regexp.MustCompile(`^\.\n\./tsconnect-\d+-\d+\n\./tsconnect-\d+-\d+/profile-data 0 bytes\n$`).MatchString(p.stdout.String()) {
		t.Errorf("the command sees in TMPDIR:\n%s\nwant only tsconnect's private directory, with tsconnect's empty profile-data file", p.stdout)
	}
}

// TestSIGKILLNewIdentity: SIGKILL cannot be caught, so the killed node
// stays on the machine list until the control plane's ephemeral timeout;
// a restarted tsconnect joins as a new node (new name, ID and key) and
// never takes over the dead one's identity, and the new one still leaves
// at once.
func TestSIGKILLNewIdentity(t *testing.T) {
	tn := newTailnet(t, "")
	tmp := t.TempDir()
	env := tn.env("TMPDIR="+tmp, "HOME="+t.TempDir())
	args := []string{"up", "--hostname-prefix", "sigkill", "--listen", "127.0.0.1:0"}

	p1 := startTsc(t, env, args...)
	name1, ip1 := p1.waitReady()
	p1.waitOutput(p1.stderr, "(?m)^ready$", 30*time.Second)
	p1.cmd.Process.Kill()
	p1.wait(10 * time.Second)
	time.Sleep(500 * time.Millisecond)
	old, found, err := tn.ctl.FindNode(name1)
	if err != nil || !found {
		t.Fatalf("after SIGKILL, %s is not listed (%v): the test expects the control plane to keep it until its ephemeral timeout", name1, err)
	}
	t.Logf("after SIGKILL: %s (id %s) still listed, online=%v, as documented", name1, old.ID, old.Online)
	// The dead process's private temp dir cannot be removed by it.
	if left := filesUnder(t, tmp); len(left) == 0 {
		t.Logf("SIGKILL left nothing in TMPDIR")
	} else {
		t.Logf("SIGKILL left %d files in TMPDIR (tsnet's log buffers; no key)", len(left))
	}

	p2 := startTsc(t, env, args...)
	name2, ip2 := p2.waitReady()
	p2.waitOutput(p2.stderr, "(?m)^ready$", 30*time.Second)
	if name2 == name1 {
		t.Errorf("restarted tsconnect reused the name %s", name1)
	}
	if ip2 == ip1 {
		t.Errorf("restarted tsconnect got the dead node's address %v", ip1)
	}
	nw, found, err := tn.ctl.FindNode(name2)
	if err != nil || !found {
		t.Fatalf("new node %s not listed: %v", name2, err)
	}
	if nw.ID == old.ID {
		t.Errorf("new node has the dead node's ID %s", old.ID)
	}
	if _, still, _ := tn.ctl.FindNode(name1); !still {
		t.Errorf("the dead node %s was replaced rather than left to expire", name1)
	}
	sent := time.Now()
	p2.cmd.Process.Signal(syscall.SIGTERM)
	if code := p2.wait(10 * time.Second); code != 0 {
		t.Errorf("second up: exit %d\n%s", code, p2.stderr)
	}
	tn.waitGone(t, name2, sent, "SIGTERM of the restarted up")
	// The dead node's own temp dir is the restarted one's to clean up.
	if left := filesUnder(t, tmp); len(left) > 0 {
		t.Errorf("after a clean restart and exit, TMPDIR still holds %q", left)
	}
	// Remove the dead node now rather than wait for its timeout.
	if _, err := tn.ctl.Run("nodes", "delete", "--identifier", old.ID.String(), "--force"); err != nil {
		t.Logf("deleting the dead node: %v", err)
	}
}

// filesUnder lists every path below dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && path != dir {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	return out
}
