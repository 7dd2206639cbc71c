// Package examples holds runnable programs; this test builds each one and
// runs it against the real test tailnet.
package examples

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/internal/tailnettest"
	"github.com/tsconnect/tsconnect/secrets"
)

func TestMain(m *testing.M) { tailnettest.Main(m) }

func build(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if err := tailnettest.GoBuild(bin, "./"+name); err != nil {
		t.Fatal(err)
	}
	return bin
}

// env is the example's environment: the key and control URL the way a
// user would pass them.
func env(ctl *tailnettest.Control, key string) []string {
	return append(os.Environ(), "TS_AUTHKEY="+key, "TS_CONTROL_URL="+ctl.URL)
}

func TestExamples(t *testing.T) {
	ctl := tailnettest.Shared(t)
	web := ctl.StartNode(t, "exweb", "tag:web")
	web.ServeHTTP(t, 80, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from exweb") }))
	db := ctl.StartNode(t, "exdb", "tag:db")
	db.ServeTCP(t, 5432, nil) // echo; the end-to-end suite uses a real PostgreSQL
	key := ctl.CreateKey(t, "tag:sandbox")

	t.Run("agent", func(t *testing.T) {
		cmd := exec.Command(build(t, "agent"), "-allow", "."+tailnettest.BaseDomain+":80", "http://exweb/")
		cmd.Env = env(ctl, key)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(string(out), "go:   200 OK hello from exweb") || !strings.Contains(string(out), "curl: hello from exweb") {
			t.Errorf("output:\n%s", out)
		}
	})

	t.Run("dbforward", func(t *testing.T) {
		cmd := exec.Command(build(t, "dbforward"), "-listen", "127.0.0.1:0", "-to", db.FQDN+":5432")
		cmd.Env = env(ctl, key)
		cmd.Stderr = os.Stderr
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		var local, remote string
		fmt.Sscanf(line, "forwarding %s -> %s", &local, &remote)
		var got string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && got != "ping"; {
			// The first attempt may race the database node learning of us.
			got = echo(t, local, "ping")
		}
		if got != "ping" {
			t.Fatalf("echo through %s: %q", line, got)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	})

	t.Run("socksclient", func(t *testing.T) {
		k, _ := secrets.NewKey(key)
		c, err := connector.Start(context.Background(), connector.Config{
			ControlURL: ctl.URL, KeySource: secrets.Static(k),
			Proxy: &connector.ProxyConfig{Listen: "127.0.0.1:0"},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st, _ := c.Status(context.Background())
		web.WaitPeer(t, st.IPv4)
		out, err := exec.Command(build(t, "socksclient"), "-proxy", c.ProxyAddr(), "http://exweb/").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "200 OK hello from exweb" {
			t.Errorf("%v: %s", err, out)
		}
	})
}

func echo(t *testing.T, addr, msg string) string {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(conn, msg)
	buf := make([]byte, len(msg))
	n, _ := io.ReadFull(conn, buf)
	return string(buf[:n])
}
