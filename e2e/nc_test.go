package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// startSSHD starts Debian's sshd on the namespace loopback, with a fresh
// host key and one authorized user key, and returns its port, the host's
// public key line and the user's private key file.
func startSSHD(t *testing.T) (port int, hostPub, userKey string) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatal("sshd not installed (apt-get install openssh-server); .ci/run installs it")
	}
	dir := t.TempDir()
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "user.pub"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	hp, err := os.ReadFile(filepath.Join(dir, "host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	// sshd insists on its privilege separation directory, which the
	// package's service would have made.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	port = freePort(t)
	cfg := filepath.Join(dir, "sshd_config")
	os.WriteFile(cfg, []byte("Port "+strconv.Itoa(port)+"\nListenAddress 127.0.0.1\nHostKey "+filepath.Join(dir, "host")+
		"\nPidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"+
		"KbdInteractiveAuthentication no\nAuthorizedKeysFile "+filepath.Join(dir, "authorized_keys")+"\n"), 0o600)
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not start:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port, strings.TrimSpace(string(hp)), filepath.Join(dir, "user")
}

// TestSSHThroughNC: ssh, which ignores proxy variables, reaches an sshd on
// a tailnet node by its MagicDNS short name through `tsconnect nc` as its
// ProxyCommand, under `tsconnect run`, checking the host key of that name
// (known_hosts names "sshbox", not 127.0.0.1 as a --forward would need);
// the tunnel is the proxy's, allowed and audited; a destination the
// allowlist denies fails at once with the reason and exit 1. The same
// works under --isolate=landlock, and under --isolate=netns plain ssh
// does, with no ProxyCommand.
func TestSSHThroughNC(t *testing.T) {
	w := setup(t)
	port, hostPub, key := startSSHD(t)
	n := mustNode(t, w.ctl, "sshbox", "tag:ssh")
	publishTCP(t, n, 22, "127.0.0.1:"+strconv.Itoa(port))
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte("sshbox "+hostPub+"\n"), 0o600)
	audit := filepath.Join(dir, "audit.jsonl")
	script := `ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KH" -i "$KEY" \
	-o ProxyCommand="$TSC nc %h:%p" root@sshbox 'echo hello from $(hostname -s 2>/dev/null || echo sshd) over ssh'
echo "ssh: exit $?"
"$TSC" nc web:22 </dev/null; echo "denied: exit $?"`
	r := w.tsconnect(t, []string{"KH=" + kh, "KEY=" + key, "TSC=" + w.bin}, "run",
		"--allow=sshbox."+tailnettest.BaseDomain+":22", "--audit-log", audit, "--", "sh", "-c", script)
	t.Logf("exit %d\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	if !strings.Contains(r.stdout, "over ssh\nssh: exit 0") {
		t.Errorf("ssh through tsconnect nc: %q", r.stdout)
	}
	if !strings.Contains(r.stdout, "denied: exit 1") || !strings.Contains(r.stderr, `web:22: not allowed by the proxy's allowlist (SOCKS5 reply 2)`) {
		t.Errorf("nc to a denied destination: stdout %q, stderr %q; want exit 1 and the reason", r.stdout, r.stderr)
	}
	// Under --isolate=landlock too: nc's connect is to the proxy's port.
	r2 := w.tsconnect(t, []string{"KH=" + kh, "KEY=" + key, "TSC=" + w.bin}, "run", "--isolate=landlock",
		"--allow=sshbox."+tailnettest.BaseDomain+":22", "--", "sh", "-c", script)
	if !strings.Contains(r2.stdout, "over ssh\nssh: exit 0") || !strings.Contains(r2.stdout, "denied: exit 1") {
		t.Errorf("ssh through tsconnect nc under --isolate=landlock: %q\n%s", r2.stdout, r2.stderr)
	}
	// Under --isolate=netns, ssh needs no ProxyCommand: sshbox resolves
	// in the namespace, and the connection goes through tsconnect.
	plain := `ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KH" -i "$KEY" root@sshbox 'echo hello over plain ssh'; echo "ssh: exit $?"`
	r3 := w.tsconnect(t, []string{"KH=" + kh, "KEY=" + key}, "run", "--isolate=netns", "--audit-log", audit,
		"--allow=sshbox."+tailnettest.BaseDomain+":22", "--", "sh", "-c", plain)
	if !strings.Contains(r3.stdout, "hello over plain ssh\nssh: exit 0") {
		t.Errorf("plain ssh under --isolate=netns: %q\n%s", r3.stdout, r3.stderr)
	}
	b, _ := os.ReadFile(audit)
	if !strings.Contains(string(b), `"protocol":"isolate","host":"sshbox.`+tailnettest.BaseDomain+`","port":22`) {
		t.Errorf("no isolate audit line for sshbox:22:\n%s", b)
	}
	if !strings.Contains(string(b), `"protocol":"socks5","host":"sshbox.`+tailnettest.BaseDomain+`","port":22`) || !strings.Contains(string(b), `"decision":"allow"`) {
		t.Errorf("no allowed socks5 audit line for sshbox:22:\n%s", b)
	}
}
