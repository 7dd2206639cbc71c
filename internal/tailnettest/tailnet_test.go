package tailnettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// TestTwoNodes proves the harness: two nodes join, and one fetches a page
// from the other by MagicDNS name over the tailnet.
func TestTwoNodes(t *testing.T) {
	c := StartControl(t, ControlOptions{})
	t0 := time.Now()
	web := c.StartNode(t, "web", "tag:web")
	cli := c.StartNode(t, "client", "tag:sandbox")
	t.Logf("two nodes up in %v", time.Since(t0))
	web.WaitPeer(t, cli.IP4)
	cnt := web.ServeHTTP(t, 80, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from web") }))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+web.FQDN+"/", nil)
	resp, err := cli.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from web" || cnt.Load() != 1 {
		t.Fatalf("body %q, accepted %d", body, cnt.Load())
	}
	n, ok, err := c.FindNode("client")
	if err != nil || !ok {
		t.Fatalf("client not listed: %v", err)
	}
	if n.PreAuthKey == nil || !n.PreAuthKey.Ephemeral || len(n.Tags) != 1 || n.Tags[0] != "tag:sandbox" {
		t.Fatalf("node listed as %+v", n)
	}
}

// TestStopRestart: a restarted control keeps its ports, database and
// keys: nodes that joined before reconnect, the CLI lists them, and new
// keys and nodes work.
func TestStopRestart(t *testing.T) {
	c := StartControl(t, ControlOptions{})
	web := c.StartNode(t, "rweb", "tag:web")
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := c.Nodes(); err == nil {
		t.Fatal("nodes list answered while headscale was stopped")
	}
	t0 := time.Now()
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %v", time.Since(t0).Round(time.Millisecond))
	for {
		n, ok, err := c.FindNode("rweb")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Fatal("rweb no longer listed after the restart")
		}
		if n.Online {
			break
		}
		if time.Since(t0) > 60*time.Second {
			t.Fatal("rweb not online 60s after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("rweb back online %v after the restart began", time.Since(t0).Round(time.Millisecond))
	cli := c.StartNode(t, "rclient", "tag:sandbox")
	web.WaitPeer(t, cli.IP4)
	cli.WaitPeer(t, web.IP4)
	if err := c.Restart(); err != nil { // a running control restarts too
		t.Fatal(err)
	}
	c.Close()
	if err := c.Restart(); err == nil {
		t.Error("Restart after Close succeeded")
	}
}

// TestDERPDown: with no DERP or STUN server at all, nodes still join and
// reach each other over the direct loopback path.
func TestDERPDown(t *testing.T) {
	c := StartControl(t, ControlOptions{DERPDown: true})
	t0 := time.Now()
	web := c.StartNode(t, "dweb", "tag:web")
	cli := c.StartNode(t, "dclient", "tag:sandbox")
	t.Logf("two nodes up in %v without DERP", time.Since(t0).Round(time.Millisecond))
	web.WaitPeer(t, cli.IP4)
	p, err := cli.PathTo(web.IP4, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dclient -> dweb: %v", p)
	if !p.Direct() {
		t.Fatalf("path %v, want direct", p)
	}
}

// TestNodeCloseWithManyConns: a node with more than 512 open TCP
// connections closes promptly. (tsnet's Close alone blocks forever: it
// stops draining netstack's 512-packet outbound queue before it resets the
// connections.) Node.Close's workaround leaves a rarer hang (see there),
// seen once under load, so one hung Close is retried with new nodes; a
// second one fails: without the workaround every Close hangs.
func TestNodeCloseWithManyConns(t *testing.T) {
	c := StartControl(t, ControlOptions{})
	for attempt := 1; ; attempt++ {
		hung := closeWithManyConns(t, c, attempt)
		if !hung {
			return
		}
		if attempt == 2 {
			t.Fatalf("Close hung twice in a row: the workaround in Node.Close no longer works")
		}
	}
}

// closeWithManyConns is one attempt: it reports whether a Close hung.
func closeWithManyConns(t *testing.T, c *Control, attempt int) (hung bool) {
	const conns = 600
	web := c.StartNode(t, fmt.Sprintf("mweb%d", attempt), "tag:web")
	cli := c.StartNode(t, fmt.Sprintf("mclient%d", attempt), "tag:sandbox")
	web.ServeTCP(t, 7, nil)
	web.WaitPeer(t, cli.IP4)
	var open []net.Conn
	closeAll := func() {
		for _, c := range open {
			c.Close()
		}
	}
	defer func() {
		if hung {
			go closeAll() // an endpoint the hung Close holds locked would block it
		} else {
			closeAll()
		}
	}()
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := cli.Dial(ctx, "tcp", web.IP4.String()+":7")
		cancel()
		if err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		open = append(open, conn)
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("conn %d: write: %v", i, err)
		}
		got := make([]byte, 1)
		if _, err := io.ReadFull(conn, got); err != nil || got[0] != byte(i) {
			t.Fatalf("conn %d: echo %v, %v; want [%d]", i, got, err, byte(i))
		}
	}
	closeNode := func(n *Node, what string) {
		t.Helper()
		t0 := time.Now()
		err := n.Close()
		if errors.Is(err, ErrCloseHung) {
			t.Logf("attempt %d: %s: %v", attempt, what, err)
			hung = true
			return
		}
		t.Logf("%s closed in %v: %v", what, time.Since(t0).Round(time.Millisecond), err)
	}
	// The server side vanishes with its connections open; the client side
	// closes its own, which then wait (FIN_WAIT1) for a peer that never
	// answers.
	closeNode(web, fmt.Sprintf("node with %d open connections", conns))
	if hung {
		go closeAll()
	} else {
		closeAll()
	}
	open = nil
	closeNode(cli, fmt.Sprintf("node with %d connections closing towards a vanished peer", conns))
	return hung
}
