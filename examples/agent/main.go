// Command agent is a minimal agent runtime: it joins the tailnet with a
// connector, fetches a URL with the connector's HTTP client, then runs curl
// with the proxy environment, the way an agent's tool call would.
//
//	TS_AUTHKEY=tskey-auth-… TS_CONTROL_URL=https://headscale.example.com \
//	  go run ./examples/agent -allow .your-tailnet.ts.net http://grafana/api/health
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
)

func main() {
	allow := flag.String("allow", "", "allowlist, e.g. .your-tailnet.ts.net (empty: anything the tailnet routes)")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: agent [-allow LIST] URL")
	}
	url := flag.Arg(0)
	list, err := dnsfilter.Parse(*allow)
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := connector.Start(ctx, connector.Config{
		HostnamePrefix: "agent",
		Allow:          list,
		Proxy:          &connector.ProxyConfig{Listen: "127.0.0.1:0"}, // for the child below
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // the node leaves the tailnet now, not after a timeout

	// In-process: the connector's HTTP client, allowlist applied.
	resp, err := c.HTTPClient().Get(url)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("go:   %s %s\n", resp.Status, body)

	// A tool the agent runs: curl with ALL_PROXY/HTTPS_PROXY set and no
	// secrets in its environment.
	cmd := c.Command(ctx, "curl", "-sS", "--max-time", "20", url)
	out, err := cmd.Output()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("curl: %s\n", out)
}
