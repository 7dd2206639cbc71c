package e2e

import (
	"github.com/tsconnect/tsconnect/internal/tailnettest"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// TestIsolateLandlock: under run --isolate=landlock, a program that uses
// the proxy reaches the allowed service, and one that ignores it is
// refused by the kernel at connect() (EACCES, at once) — here bash's
// /dev/tcp to a listener on the namespace's loopback, which sees nothing;
// the same command without --isolate reaches that listener, so the check
// can fail. psql through a --forward works under it.
func TestIsolateLandlock(t *testing.T) {
	w := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var hits atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	script := `curl -sS --max-time 20 http://web/; echo
bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + port + ` && echo bypass: connected' 2>&1
echo "bypass: exit $?"`
	r := w.tsconnect(t, nil, "run", "--isolate=landlock", "--allow=web."+tailnettest.BaseDomain+":80", "--", "sh", "-c", script)
	t.Logf("exit %d\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	if !strings.HasPrefix(r.stdout, "hello from web") {
		t.Errorf("through the proxy under Landlock: %q", r.stdout)
	}
	if !strings.Contains(r.stdout, "Permission denied") || !strings.Contains(r.stdout, "bypass: exit 1") {
		t.Errorf("a direct connect under Landlock: %q, want Permission denied", r.stdout)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback listener saw %d connections under --isolate=landlock", n)
	}

	// A forward's port is open to it too: psql, which ignores proxies.
	fport := strconv.Itoa(freePort(t))
	r = w.tsconnect(t, nil, "run", "--isolate=landlock", "--allow=db."+tailnettest.BaseDomain+":5432", "--forward=127.0.0.1:"+fport+"=db:5432",
		"--", "psql", "-h", "127.0.0.1", "-p", fport, "-U", "postgres", "-Atc", "select 6*7")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "42" {
		t.Errorf("psql through a forward under Landlock: exit %d, %q\n%s", r.code, r.stdout, r.stderr)
	}

	r = w.tsconnect(t, nil, "run", "--allow=web."+tailnettest.BaseDomain+":80", "--", "sh", "-c", script)
	if !strings.Contains(r.stdout, "bypass: connected") || hits.Load() != 1 {
		t.Errorf("without --isolate the direct connect should work (the check above proves nothing otherwise): %q, %d hits", r.stdout, hits.Load())
	}
}
