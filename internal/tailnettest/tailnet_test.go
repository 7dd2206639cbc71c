package tailnettest

import (
	"context"
	"io"
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
