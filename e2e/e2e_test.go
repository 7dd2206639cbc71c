// Package e2e drives the real tsconnect binary with real clients (curl,
// psql, kubectl, a Go program from examples/) against a real control plane
// (Headscale) and a real database (Debian's PostgreSQL), all inside a
// loopback-only network namespace.
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
	"github.com/tsconnect/tsconnect/internal/vaulttest"
)

func TestMain(m *testing.M) {
	if os.Getenv("E2E_PIPELINE") != "" {
		os.Exit(pipelineClient()) // TestVhostTunnels's client, inside tsconnect run
	}
	tailnettest.Main(m)
}

// The policy of the background reading: the sandbox tag may reach web on
// 80/443 and the database on 5432 (and, for ssh, an ssh box on 22);
// everything else is denied.
const policy = `{
  "tagOwners": {"tag:sandbox": ["ops@"], "tag:web": ["ops@"], "tag:db": ["ops@"], "tag:k8s": ["ops@"], "tag:ssh": ["ops@"]},
  "acls": [
    {"action": "accept", "src": ["tag:sandbox"], "dst": ["tag:web:80,443", "tag:db:5432", "tag:k8s:443", "tag:ssh:22"]}
  ]
}`

type world struct {
	ctl     *tailnettest.Control
	bin     string
	key     string
	web     *tailnettest.Node
	webTLS  *tailnettest.Counter
	web8080 *tailnettest.Counter
	caFile  string
	db      *tailnettest.Node
	dbHits  *tailnettest.Counter
	kube    *tailnettest.Node
	kubeCA  string
}

var (
	worldOnce sync.Once
	theWorld  *world
)

// setup starts the tailnet, services and builds tsconnect once for all
// tests in this binary. Its pieces are stopped by tailnettest.Main.
func setup(t *testing.T) *world {
	t.Helper()
	worldOnce.Do(func() {
		w := &world{}
		bt := &onceT{T: t}
		ctl, err := tailnettest.NewControl(tailnettest.ControlOptions{Policy: policy})
		if err != nil {
			t.Fatal(err)
		}
		w.ctl = ctl
		w.bin = buildTsconnect(t)
		tailnettest.AtExit(func() { os.Remove(w.bin) })
		w.key, err = ctl.NewKey(tailnettest.KeyOptions{Tags: []string{"tag:sandbox"}, Reusable: true, Ephemeral: true})
		if err != nil {
			t.Fatal(err)
		}
		w.web = mustNode(t, ctl, "web", "tag:web")
		hello := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { fmt.Fprintf(rw, "hello from web over %s", r.Proto) })
		w.web.ServeHTTP(bt, 80, hello)
		w.webTLS, _, w.caFile = w.web.ServeHTTPS(bt, 443, hello)
		w.web8080 = w.web.ServeHTTP(bt, 8080, hello) // ACL-denied port
		w.db = mustNode(t, ctl, "db", "tag:db")
		w.dbHits = publishTCP(bt, w.db, 5432, "127.0.0.1:"+strconv.Itoa(startPostgres(bt)))
		w.kube = mustNode(t, ctl, "kapi", "tag:k8s")
		_, _, w.kubeCA = w.kube.ServeHTTPS(bt, 443, kubeAPI)
		theWorld = w
	})
	if theWorld == nil {
		t.Fatal("setup failed in an earlier test")
	}
	return theWorld
}

// onceT lets helpers that register cleanups build state shared by every
// test in the binary: their cleanups run when the tests end, not when the
// first test does.
type onceT struct{ *testing.T }

func (o *onceT) Cleanup(f func()) { tailnettest.AtExit(f) }
func (o *onceT) TempDir() string {
	d, err := os.MkdirTemp("", "e2e")
	if err != nil {
		o.T.Fatal(err)
	}
	tailnettest.AtExit(func() { os.RemoveAll(d) })
	return d
}

func mustNode(t *testing.T, ctl *tailnettest.Control, name string, tags ...string) *tailnettest.Node {
	n, err := ctl.NewNode(name, tags...)
	if err != nil {
		t.Fatal(err)
	}
	tailnettest.AtExit(func() { n.Close() })
	return n
}

func buildTsconnect(t *testing.T) string {
	bin := filepath.Join(os.TempDir(), "tsconnect-e2e-"+uuid.NewString()[:8])
	if err := tailnettest.GoBuild(bin, "../cmd/tsconnect", "CGO_ENABLED=0"); err != nil {
		t.Fatal(err)
	}
	return bin
}

// result is one tsconnect invocation.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
	prefix         string // node name prefix used
}

// tsconnect runs the binary with args; env adds to a minimal environment
// that carries the key the way a platform would.
func (w *world) tsconnect(t *testing.T, env []string, args ...string) result {
	t.Helper()
	prefix := "e2e-" + uuid.NewString()[:8]
	full := append([]string{args[0], "--control-url", w.ctl.URL, "--hostname-prefix", prefix}, args[1:]...)
	cmd := exec.Command(w.bin, full...)
	cmd.Env = append(baseEnv(), append([]string{"TS_AUTHKEY=" + w.key}, env...)...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	t0 := time.Now()
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String(), took: time.Since(t0), prefix: prefix}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func baseEnv() []string {
	return []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + os.Getenv("HOME"), "SSL_CERT_FILE=" + os.Getenv("SSL_CERT_FILE"),
		"TS_NO_LOGS_NO_SUPPORT=true", "TS_ASSUME_NETWORK_UP_FOR_TEST=true"}
}

func TestCurl(t *testing.T) {
	w := setup(t)
	allow := "--allow=web." + tailnettest.BaseDomain + ":80,443"
	for _, tc := range []struct{ name, script string }{
		{"socks5h short name", `curl -sS --max-time 20 --proxy "$ALL_PROXY" --cacert "$CA" https://web/`},
		{"socks5h FQDN", `curl -sS --max-time 20 --proxy "$ALL_PROXY" --cacert "$CA" https://web.` + tailnettest.BaseDomain + `/`},
		{"HTTPS_PROXY CONNECT short name", `curl -sS --max-time 20 --cacert "$CA" https://web/`},
		{"HTTPS_PROXY CONNECT FQDN", `curl -sS --max-time 20 --cacert "$CA" https://web.` + tailnettest.BaseDomain + `/`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.webTLS.Load()
			r := w.tsconnect(t, []string{"CA=" + w.caFile}, "run", allow, "--", "sh", "-c", tc.script)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "hello from web over HTTP/") {
				t.Fatalf("exit %d, stdout %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if w.webTLS.Load() == before {
				t.Error("the TLS service saw no connection")
			}
		})
	}
}

func TestPsqlThroughForward(t *testing.T) {
	w := setup(t)
	port := freePort(t)
	q := `create table if not exists agents(name text); insert into agents values ('tsconnect'); select count(*) || ':' || max(name) from agents;`
	r := w.tsconnect(t, nil, "run", "--allow=db."+tailnettest.BaseDomain+":5432",
		fmt.Sprintf("--forward=127.0.0.1:%d=db:5432", port), "--",
		"psql", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", q)
	if r.code != 0 || !strings.HasSuffix(strings.TrimSpace(r.stdout), ":tsconnect") {
		t.Fatalf("psql: exit %d, stdout %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("psql answered %q in %v (join + query)", strings.TrimSpace(r.stdout), r.took.Round(time.Millisecond))
}

func TestKubectl(t *testing.T) {
	w := setup(t)
	kc := kubeconfig(t, "https://kapi."+tailnettest.BaseDomain, w.kubeCA)
	r := w.tsconnect(t, []string{"KUBECONFIG=" + kc}, "run", "--allow=.k8s.invalid,kapi."+tailnettest.BaseDomain+":443",
		"--", "kubectl", "version", "-o", "json", "--request-timeout=20s")
	var v struct {
		Server struct{ GitVersion string } `json:"serverVersion"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil || v.Server.GitVersion != "v1.32.4-tailnet" {
		t.Fatalf("kubectl: exit %d, stdout %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestGoExampleAgainstUp(t *testing.T) {
	w := setup(t)
	ex := filepath.Join(t.TempDir(), "socksclient")
	if err := tailnettest.GoBuild(ex, "../examples/socksclient"); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	// The example runs as the child of `tsconnect run`, with the proxy
	// address taken from the environment the way an agent's tool would.
	r := w.tsconnect(t, nil, "run", "--allow=web."+tailnettest.BaseDomain+":80", "--listen", "127.0.0.1:"+strconv.Itoa(port),
		"--", ex, "-proxy", "127.0.0.1:"+strconv.Itoa(port), "http://web/")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "200 OK hello from web over HTTP/1.1" {
		t.Fatalf("exit %d, stdout %q\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestControlPlaneView: while `tsconnect run` is active Headscale lists the
// node (prefix, tags, ephemeral); after a normal exit, SIGTERM and SIGINT
// it is gone within 2 s.
func TestControlPlaneView(t *testing.T) {
	w := setup(t)
	for _, how := range []string{"exit", "SIGTERM", "SIGINT"} {
		t.Run(how, func(t *testing.T) {
			prefix := "e2e-" + uuid.NewString()[:8]
			args := []string{"run", "--control-url", w.ctl.URL, "--hostname-prefix", prefix, "--allow=web." + tailnettest.BaseDomain, "--", "sleep", "30"}
			if how == "exit" {
				args[len(args)-1] = "1"
			}
			cmd := exec.Command(w.bin, args...)
			cmd.Env = append(baseEnv(), "TS_AUTHKEY="+w.key)
			var se bytes.Buffer
			cmd.Stderr = &se
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			node := waitNode(t, w.ctl, prefix, 20*time.Second)
			if len(node.Tags) != 1 || node.Tags[0] != "tag:sandbox" || node.PreAuthKey == nil || !node.PreAuthKey.Ephemeral {
				t.Errorf("headscale lists %+v", node)
			}
			var t0 time.Time
			switch how {
			case "exit":
				cmd.Wait()
				t0 = time.Now()
			case "SIGTERM", "SIGINT":
				t0 = time.Now()
				sig := map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT}[how]
				cmd.Process.Signal(sig)
				cmd.Wait()
			}
			gone, err := w.ctl.WaitGone(node.Name, t0, 2*time.Second)
			if err != nil {
				t.Fatalf("%v\nstderr:\n%s", err, se.String())
			}
			t.Logf("after %s: node gone from headscale nodes list in %v", how, gone.Round(time.Millisecond))
		})
	}
}

func waitNode(t *testing.T, ctl *tailnettest.Control, prefix string, timeout time.Duration) tailnettest.HSNode {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ns, err := ctl.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if strings.HasPrefix(n.Name, prefix) {
				return n
			}
		}
	}
	t.Fatalf("no node named %s* appeared", prefix)
	return tailnettest.HSNode{}
}

// TestFences: each layer stops what it should, and the test can tell which.
func TestFences(t *testing.T) {
	w := setup(t)
	t.Run("allowlist allows, ACL denies", func(t *testing.T) {
		before := w.web8080.Load()
		r := w.tsconnect(t, nil, "run", "--allow=."+tailnettest.BaseDomain, "--dial-timeout", "2s", "--",
			"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "http://web:8080/")
		if r.stdout != "504" {
			t.Errorf("ACL-denied port via HTTP proxy: %q (exit %d), want 504 Gateway Timeout\n%s", r.stdout, r.code, r.stderr)
		}
		if w.web8080.Load() != before {
			t.Error("the ACL-denied listener saw a connection")
		}
	})
	t.Run("ACL allows, allowlist denies", func(t *testing.T) {
		before := w.dbHits.Load()
		r := w.tsconnect(t, nil, "run", "--allow=web."+tailnettest.BaseDomain, "--",
			"sh", "-c", `t0=$(date +%s%N); curl -sS --max-time 20 --proxy "$ALL_PROXY" telnet://db:5432 </dev/null; echo "exit=$? ms=$(( ($(date +%s%N)-t0)/1000000 ))"`)
		if !strings.Contains(r.stdout, "exit=97") {
			t.Errorf("allowlist-denied db via SOCKS5: %q, want curl exit 97 (proxy refused)\n%s", r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "(2)") && !strings.Contains(r.stderr, "not allowed") {
			t.Logf("curl said: %s", r.stderr)
		}
		if w.dbHits.Load() != before {
			t.Error("the allowlist-denied database saw a connection")
		}
		t.Logf("refused: %s", strings.TrimSpace(r.stdout))
	})
}

// TestKeyFromVault: the preauth key is read from the Vault double with
// AppRole from KV v2; neither it nor the Vault token nor the secret_id
// reaches the child's /proc/<pid>/environ, any file under the process's
// temp dir, or its output and audit log.
func TestKeyFromVault(t *testing.T) {
	w := setup(t)
	const roleID, secretID = "role-e2e", "secret-id-e2e-must-not-leak"
	v := vaulttest.New(t)
	v.PutKV("secret", "tailscale", 2, map[string]any{"authkey": w.key})
	v.AddAppRole(roleID, secretID)
	dir := t.TempDir()
	sidFile := filepath.Join(dir, "secret-id")
	os.WriteFile(sidFile, []byte(secretID+"\n"), 0o600)
	tmp, home, cwd := filepath.Join(dir, "tmp"), filepath.Join(dir, "home"), filepath.Join(dir, "cwd")
	for _, d := range []string{tmp, home, cwd} {
		os.Mkdir(d, 0o700)
	}
	audit := filepath.Join(dir, "audit.jsonl")
	userToken := v.NewToken()

	prefix := "e2e-" + uuid.NewString()[:8]
	script := `curl -sS --max-time 20 http://web/ >/dev/null; cat /proc/$$/environ | tr '\0' '\n'; ls -R "$TMPDIR" > /dev/null; sleep 2`
	cmd := exec.Command(w.bin, "run", "--control-url", w.ctl.URL, "--hostname-prefix", prefix, "-v",
		"--allow=web."+tailnettest.BaseDomain+":80", "--audit-log", audit,
		"--vault-addr", v.URL, "--vault-path", "secret/tailscale", "--vault-auth", "approle",
		"--vault-role-id", roleID, "--vault-secret-id-file", sidFile, "--", "sh", "-c", script)
	// No TS_AUTHKEY: the key can only come from Vault. VAULT_TOKEN is set
	// (an unrelated user token) to prove it is scrubbed from the child.
	cmd.Env = append(baseEnv(), "TMPDIR="+tmp, "HOME="+home, "XDG_CACHE_HOME=", "XDG_CONFIG_HOME=", "VAULT_TOKEN="+userToken)
	cmd.Dir = cwd
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// While it runs, scan every file it created, every regular file it
	// holds open, and its command line.
	node := waitNode(t, w.ctl, prefix, 20*time.Second)
	secrets := append([]string{w.key, secretID, userToken}, v.Revoked()...)
	scanned := 0
	scan := func(p string) {
		b, _ := os.ReadFile(p)
		scanned++
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("file %s contains a secret (%.6s…)", p, s)
			}
		}
	}
	for _, d := range []string{tmp, home, cwd} {
		filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				scan(p)
			}
			return nil
		})
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", cmd.Process.Pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, "/") {
			if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
				scan(target)
			}
		}
	}
	if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)); err == nil {
		for _, s := range secrets {
			if bytes.Contains(cl, []byte(s)) {
				t.Errorf("tsconnect's command line contains a secret (%.6s…)", s)
			}
		}
	}
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("tsconnect run: %v\nstderr:\n%s", err, se.String())
	}
	if node.PreAuthKey == nil || !node.PreAuthKey.Ephemeral {
		t.Errorf("node %+v did not join with the ephemeral key from Vault", node)
	}
	auditLog, _ := os.ReadFile(audit)
	if !bytes.Contains(auditLog, []byte(`"decision":"allow"`)) {
		t.Errorf("audit log lacks the allowed request:\n%s", auditLog)
	}
	if !strings.Contains(so.String(), "ALL_PROXY=socks5h://") {
		t.Errorf("child environ lacks ALL_PROXY:\n%s", so.String())
	}
	secrets = append(secrets, v.Revoked()...) // the AppRole login token, now known
	for _, s := range secrets {
		for name, text := range map[string]string{"child /proc/self/environ and stdout": so.String(), "stderr (-v)": se.String(), "audit log": string(auditLog)} {
			if strings.Contains(text, s) {
				t.Errorf("%s contains a secret (%.6s…)", name, s)
			}
		}
	}
	if len(v.Revoked()) != 1 {
		t.Errorf("AppRole login token revoked %d times, want once", len(v.Revoked()))
	}
	for name, d := range map[string]string{"TMPDIR": tmp, "HOME": home, "the working directory": cwd} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("left in %s after exit: %v", name, entries)
		}
	}
	t.Logf("scanned %d files (temp dir, HOME, cwd, open files) of the running process; stderr %d bytes, audit %d bytes", scanned, se.Len(), len(auditLog))
	if scanned == 0 {
		t.Error("no file scanned: the scan proves nothing")
	}
}
