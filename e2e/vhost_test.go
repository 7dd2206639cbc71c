package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// The vhost world: one tailnet node, "vhosts", publishes a real nginx
// serving two names on one address, as a homelab's reverse proxy does —
// the node's own name (allowed) and admin.home.test (not allowed), each
// with its certificate and access log.
type vhostWorld struct {
	name               string // vhosts.<tailnet>
	ca                 string // the CA file both certificates chain to
	notesLog, adminLog string
}

const adminName = "admin.home.test"

var (
	vhostOnce sync.Once
	theVhosts *vhostWorld
)

func vhostSetup(t *testing.T) (*world, *vhostWorld) {
	w := setup(t)
	vhostOnce.Do(func() {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Fatal("nginx not installed (apt-get install nginx); .ci/run installs it")
		}
		bt := &onceT{T: t}
		v := &vhostWorld{name: "vhosts." + tailnettest.BaseDomain}
		dir := bt.TempDir()
		var err error
		if v.ca, err = tailnettest.WriteCerts(dir, v.name, adminName); err != nil {
			t.Fatal(err)
		}
		v.notesLog, v.adminLog = filepath.Join(dir, "notes.log"), filepath.Join(dir, "admin.log")
		httpPort, tlsPort := freePort(t), freePort(t)
		conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
	client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
	uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
	log_format vh '$server_name $status "$request" sni=$ssl_server_name host=$host';
	# The allowed vhost is the default: a request without a name goes there.
	server {
		listen 127.0.0.1:%[2]d default_server;
		server_name %[4]s;
		access_log %[1]s/notes.log vh;
		location / { return 200 "notes\n"; }
	}
	server {
		listen 127.0.0.1:%[3]d ssl default_server;
		server_name %[4]s;
		ssl_certificate %[1]s/%[4]s.crt; ssl_certificate_key %[1]s/%[4]s.key;
		access_log %[1]s/notes.log vh;
		# What tsconnect cannot see: a Host inside TLS that differs from
		# the SNI. The reverse proxy refuses it itself (README).
		if ($ssl_server_name != $host) { return 421 "misdirected\n"; }
		location / { return 200 "notes\n"; }
	}
	server {
		listen 127.0.0.1:%[2]d;
		server_name %[5]s;
		access_log %[1]s/admin.log vh;
		location / { return 200 "admin\n"; }
	}
	server {
		listen 127.0.0.1:%[3]d ssl;
		server_name %[5]s;
		ssl_certificate %[1]s/%[5]s.crt; ssl_certificate_key %[1]s/%[5]s.key;
		access_log %[1]s/admin.log vh;
		if ($ssl_server_name != $host) { return 421 "misdirected\n"; }
		location / { return 200 "admin\n"; }
	}
}
`, dir, httpPort, tlsPort, v.name, adminName)
		os.Mkdir(filepath.Join(dir, "tmp"), 0o700)
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{v.notesLog, v.adminLog} {
			os.WriteFile(f, nil, 0o644)
		}
		cmd := exec.Command("/usr/sbin/nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
		var errs strings.Builder
		cmd.Stderr = &errs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tailnettest.AtExit(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tlsPort))
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				t.Fatalf("nginx did not start: %v\n%s\n%s", err, errs.String(), b)
			}
			time.Sleep(50 * time.Millisecond)
		}
		n := mustNode(t, w.ctl, "vhosts", "tag:web")
		publishTCP(bt, n, 80, "127.0.0.1:"+strconv.Itoa(httpPort))
		publishTCP(bt, n, 443, "127.0.0.1:"+strconv.Itoa(tlsPort))
		theVhosts = v
	})
	if theVhosts == nil {
		t.Fatal("vhost setup failed in an earlier test")
	}
	return w, theVhosts
}

func lines(t *testing.T, file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
}

// TestVhostTunnels: through a tunnel allowed to the node's name, curl
// reaches that vhost of a real nginx over HTTPS and HTTP, and every trick
// that names the other vhost inside the tunnel — curl --connect-to (SNI),
// -H Host over a SOCKS5 tunnel, openssl s_client -servername through
// HTTP CONNECT, a second keep-alive request, a pipelined one — is refused
// by tsconnect (a TLS alert, a 403), audited, and never reaches nginx:
// the admin vhost's access log stays empty.
func TestVhostTunnels(t *testing.T) {
	w, v := vhostSetup(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// nginx logs a request when it ends; curl's keep-alive, the pipeline
	// and s_client all close theirs before tsconnect run returns.
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	const c = `curl -sS --max-time 20 --cacert "$CA" `
	script := strings.Join([]string{
		`set -u`,
		`P=${HTTPS_PROXY#http://}; P=${P%/}`,
		`echo "https: $(` + c + `https://$V/)"`,
		`echo "http: $(` + c + `--proxy "$ALL_PROXY" http://$V/)"`,
		`echo "http-proxy: $(` + c + `-H "Host: $A" http://$V/)"`,
		`` + c + `--connect-to $A:443:$V:443 https://$A/ >/dev/null 2>&1; echo "connect-to: exit $?"`,
		`echo "host: $(curl -s --max-time 20 --proxy "$ALL_PROXY" -H "Host: $A" -o /dev/null -w '%{http_code}' http://$V/)"`,
		`echo Q | openssl s_client -proxy "$P" -connect $V:443 -servername $A -CAfile "$CA" >/dev/null 2>&1; echo "s_client: exit $?"`,
		`echo Q | openssl s_client -proxy "$P" -connect $V:443 -servername $V -CAfile "$CA" 2>/dev/null | grep -c 'Verify return code: 0' | sed 's/^/s_client-ok: /'`,
		`echo "keepalive: $(curl -s --max-time 20 --proxy "$ALL_PROXY" -o /dev/null -w '%{http_code} %{num_connects}\n' http://$V/ --next --proxy "$ALL_PROXY" -H "Host: $A" -o /dev/null -w '%{http_code} %{num_connects}\n' http://$V/ | tr '\n' '|')"`,
		`echo "pipelined: $(E2E_PIPELINE=$V E2E_PIPELINE_OTHER=$A "$SELF")"`,
		`echo "inside-tls: $(` + c + `-H "Host: $A" https://$V/)"`,
	}, "\n")
	r := w.tsconnect(t, []string{"CA=" + v.ca, "V=" + v.name, "A=" + adminName, "SELF=" + self},
		"run", "--allow="+v.name+":80,443", "--audit-log", audit, "--", "sh", "-c", script)
	t.Logf("exit %d\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	want := map[string]string{
		"https":       "notes",
		"http":        "notes",
		"http-proxy":  "notes", // plain-http forwarding sends the URL's host, not -H Host
		"connect-to":  "exit 35",
		"host":        "403",
		"s_client":    "exit 1",
		"s_client-ok": "1",
		"keepalive":   "200 1|403 0|",
		"pipelined":   "200 notes|403 tsconnect: HTTP Host \"" + adminName + "\"",
		"inside-tls":  "misdirected",
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if k, val, ok := strings.Cut(l, ": "); ok {
			got[k] = strings.TrimSpace(val)
		}
	}
	for k, wv := range want {
		if !strings.HasPrefix(got[k], wv) {
			t.Errorf("%s: got %q, want %q…", k, got[k], wv)
		}
	}
	// nginx logged one misdirected request for admin (the Host inside
	// TLS, which it refused itself) and nothing else.
	if al := lines(t, v.adminLog); len(al) != 1 || !strings.Contains(al[0], " 421 ") {
		t.Errorf("admin vhost's access log: %q, want only the 421 of the inside-TLS request", al)
	}
	// https, http, http-proxy, and the first keep-alive and pipelined
	// requests.
	if nl := lines(t, v.notesLog); len(nl) != 5 {
		t.Errorf("notes vhost's access log has %d lines, want 5: %q", len(nl), nl)
	}
	b, _ := os.ReadFile(audit)
	denials := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"decision":"deny"`) {
			denials++
			if !strings.Contains(l, `"sni":"`+adminName+`"`) && !strings.Contains(l, `"http_host":"`+adminName+`"`) {
				t.Errorf("a denial without the name seen: %s", l)
			}
		}
	}
	if denials != 5 {
		t.Errorf("%d denials audited, want 5 (connect-to, host, s_client, keepalive, pipelined):\n%s", denials, b)
	}

	// --opaque-tunnels: the tunnel carries what the client sends, as
	// before the check existed, and the Host trick reaches admin.
	r = w.tsconnect(t, []string{"V=" + v.name, "A=" + adminName}, "run", "--allow="+v.name+":80,443", "--opaque-tunnels", "--",
		"sh", "-c", `curl -sS --max-time 20 --proxy "$ALL_PROXY" -H "Host: $A" http://$V/`)
	if r.code != 0 || r.stdout != "admin\n" {
		t.Errorf("--opaque-tunnels, Host: %s: exit %d, %q, want admin's answer\n%s", adminName, r.code, r.stdout, r.stderr)
	}
	if al := lines(t, v.adminLog); len(al) != 2 || !strings.Contains(al[1], " 200 ") {
		t.Errorf("admin vhost's access log after --opaque-tunnels: %q, want the 421 and a 200", al)
	}
}

// pipelineClient is what the test binary does when TestVhostTunnels runs
// it inside tsconnect run (TestMain): it writes two pipelined requests on
// one SOCKS5 tunnel, to the allowed vhost and then the other, and prints
// each response's status and first body line on one line.
func pipelineClient() int {
	host, other := os.Getenv("E2E_PIPELINE"), os.Getenv("E2E_PIPELINE_OTHER")
	fail := func(err error) int { fmt.Println("error:", err); return 1 }
	u, err := url.Parse(os.Getenv("ALL_PROXY"))
	if err != nil {
		return fail(err)
	}
	d, err := proxy.FromURL(u, proxy.Direct)
	if err != nil {
		return fail(err)
	}
	conn, err := d.Dial("tcp", host+":80")
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\nGET / HTTP/1.1\r\nHost: %s\r\n\r\n", host, other)
	br := bufio.NewReader(conn)
	var out []string
	for range 2 {
		status, err := br.ReadString('\n')
		if err != nil {
			break
		}
		n := 0
		for {
			h, err := br.ReadString('\n')
			if cl, ok := strings.CutPrefix(strings.ToLower(h), "content-length:"); ok {
				n, _ = strconv.Atoi(strings.TrimSpace(cl))
			}
			if h == "\r\n" || err != nil {
				break
			}
		}
		body := make([]byte, n)
		io.ReadFull(br, body)
		out = append(out, strings.Fields(status + " ?")[1]+" "+strings.SplitN(string(body), "\n", 2)[0])
	}
	fmt.Println(strings.Join(out, "|"))
	return 0
}
