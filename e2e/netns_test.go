package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestIsolateNetns: under run --isolate=netns, programs that know nothing
// of proxies reach the allowed services by name — curl told to ignore
// proxies, bash's /dev/tcp, a Go program with no proxy support, psql
// with no --forward — and nothing else: a
// denied name does not resolve, an allowed name on a denied port, a
// TEST-NET address and a raw tailnet address are refused at once with a
// RST, each audited. The namespace has lo and tsconnect's TUN device only.
func TestIsolateNetns(t *testing.T) {
	w := setup(t)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	base := tailnettest.BaseDomain
	dbIP := w.db.IP4.String()
	goProg := filepath.Join(t.TempDir(), "noproxy")
	if err := tailnettest.GoBuild(goProg, "./testdata/noproxy", "CGO_ENABLED=0"); err != nil {
		t.Fatal(err)
	}
	script := `set +e
echo "== links"; ip -o link | awk '{print $2}' | tr '\n' ' '; echo
echo "== env"; env | grep -ci _proxy
echo "== secrets"; env | grep -c -e TS_AUTH -e tskey -e VAULT_TOKEN
echo "== getent"; getent hosts web | awk '{print $2}'
echo "== curl"; curl -sS --noproxy '*' --max-time 20 http://web/; echo
echo "== curl6"; curl -6 -sS --noproxy '*' --max-time 20 http://web/; echo
echo "== getent6"; getent ahostsv6 web | awk '{print $1}' | sort -u
echo "== bash"; bash -c 'exec 3<>/dev/tcp/web/80 && printf "GET / HTTP/1.0\r\nHost: web\r\n\r\n" >&3 && tail -n1 <&3'; echo
echo "== go"; ` + goProg + ` http://web.` + base + `/
echo "== go-dns"; ` + goProg + ` dns kapi.` + base + `
echo "== psql"; psql -h db.` + base + ` -U postgres -Atc 'select 6*7'
echo "== denied-name"; curl -sS --max-time 20 http://kapi/ 2>&1; echo "exit $?"
echo "== denied-port"; curl -sS --max-time 20 http://web:8080/ 2>&1; echo "exit $?"
echo "== testnet"; curl -sS --max-time 20 http://192.0.2.1/ 2>&1; echo "exit $?"
echo "== raw-ip"; curl -sS --max-time 20 http://` + dbIP + `:5432/ 2>&1; echo "exit $?"
`
	resolvBefore, _ := os.ReadFile("/etc/resolv.conf")
	r := w.tsconnect(t, []string{"VAULT_TOKEN=s.e2e-not-for-the-child"}, "run", "--isolate=netns", "--audit-log", audit,
		"--allow=web."+base+":80,db."+base+":5432", "--", "sh", "-c", script)
	t.Logf("exit %d in %v\n%s\nstderr:\n%s", r.code, r.took, r.stdout, r.stderr)
	sec := sections(r.stdout)
	if got := sec["links"]; got != "lo: "+"tsc0: " && got != "lo: tsc0:" {
		t.Errorf("interfaces in the namespace: %q, want lo and tsc0 only", got)
	}
	if sec["env"] != "0" {
		t.Errorf("proxy variables in the namespace: %s", sec["env"])
	}
	if sec["secrets"] != "0" {
		t.Errorf("the key or a Vault token reached the command: %s", sec["secrets"])
	}
	if sec["getent"] != "web."+base && sec["getent"] != "web" {
		t.Errorf("getent hosts web: %q", sec["getent"])
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		if !strings.HasPrefix(sec["curl6"], "hello from web") {
			t.Errorf("curl -6 to web: %q", sec["curl6"])
		}
		if !strings.HasPrefix(sec["getent6"], "fd74:7363:0:1::") {
			t.Errorf("getent ahostsv6 web: %q, want an address of fd74:7363:0:1::/64", sec["getent6"])
		}
	}
	for _, s := range []string{"curl", "bash", "go"} {
		if !strings.HasPrefix(sec[s], "hello from web") {
			t.Errorf("%s to web: %q", s, sec[s])
		}
	}
	if sec["go-dns"] != "not found" {
		t.Errorf("Go's resolver on a denied name: %q, want NXDOMAIN", sec["go-dns"])
	}
	if sec["psql"] != "42" {
		t.Errorf("psql -h db: %q", sec["psql"])
	}
	for s, want := range map[string]string{
		"denied-name": "exit 6", // could not resolve
		"denied-port": "exit 7", // connection refused (RST)
		"testnet":     "exit 7",
		"raw-ip":      "exit 7",
	} {
		if !strings.HasSuffix(sec[s], want) {
			t.Errorf("%s: %q, want %s", s, sec[s], want)
		}
	}
	// The namespace's resolv.conf was a bind mount in its own mount
	// namespace, over a file unlinked at once: nothing outside changed.
	if after, _ := os.ReadFile("/etc/resolv.conf"); string(after) != string(resolvBefore) {
		t.Errorf("/etc/resolv.conf changed: %q, was %q", after, resolvBefore)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "tsconnect-resolv-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	b, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, want := range []string{
		`"protocol":"isolate","host":"web.` + base + `","port":80,`,
		`"protocol":"isolate","host":"db.` + base + `","port":5432,`,
		`"protocol":"isolate-dns","host":"kapi.` + base + `","port":0,"resolved":"","decision":"deny"`,
		`"protocol":"isolate","host":"web.` + base + `","port":8080,"resolved":"","decision":"deny"`,
		`"protocol":"isolate","host":"192.0.2.1","port":80,"resolved":"","decision":"deny"`,
		`"protocol":"isolate","host":"` + dbIP + `","port":5432,"resolved":"","decision":"deny"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log has no %s", want)
		}
	}
	if t.Failed() {
		t.Logf("audit log:\n%s", log)
	}

	// --isolate-deny-dns=refused: the same name is refused instead.
	r = w.tsconnect(t, nil, "run", "--isolate=netns", "--isolate-deny-dns=refused",
		"--allow=web."+base+":80", "--", goProg, "dns", "kapi."+base)
	if out := strings.TrimSpace(r.stdout); !strings.HasPrefix(out, "error: ") || !strings.Contains(out, "server misbehaving") {
		t.Errorf("--isolate-deny-dns=refused: %q, want Go's error for REFUSED\n%s", out, r.stderr)
	}
}

// sections splits a script's output at its "== NAME" lines.
func sections(out string) map[string]string {
	m := map[string]string{}
	name := ""
	for line := range strings.Lines(out) {
		if n, ok := strings.CutPrefix(line, "== "); ok {
			name = strings.TrimSpace(n)
			continue
		}
		m[name] = strings.TrimSpace(m[name] + "\n" + strings.TrimRight(line, "\n"))
	}
	return m
}

// TestIsolateNetnsChildUser: with --child-user the command runs as that
// user inside the namespace (the shim takes the user after setting the
// namespace up) and still reaches what is allowed; its exit status and
// signals are its own, as with run.
func TestIsolateNetnsChildUser(t *testing.T) {
	w := setup(t)
	script := `id -u; curl -sS --max-time 20 http://web/; echo; grep CapEff /proc/self/status; exit 7`
	r := w.tsconnect(t, nil, "run", "--isolate=netns", "--child-user=nobody",
		"--allow=web."+tailnettest.BaseDomain+":80", "--", "sh", "-c", script)
	t.Logf("exit %d\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 7 || len(lines) != 3 || lines[0] != "65534" || !strings.HasPrefix(lines[1], "hello from web") ||
		strings.Join(strings.Fields(lines[2]), " ") != "CapEff: 0000000000000000" {
		t.Errorf("as nobody in the namespace: exit %d, %q; want exit 7, uid 65534, web's answer, no capabilities", r.code, lines)
	}
}
