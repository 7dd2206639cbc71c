// Command dbforward lets a client without proxy support (psql, libpq, a
// JDBC driver) reach a database on the tailnet: it listens on a local
// port and forwards each connection through the connector, allowlist
// applied.
//
//	TS_AUTHKEY=… go run ./examples/dbforward -listen 127.0.0.1:5432 -to postgres.your-tailnet.ts.net:5432
//	psql "host=127.0.0.1 port=5432 user=app dbname=app"
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5432", "local address for the database client")
	to := flag.String("to", "", "database host:port on the tailnet")
	flag.Parse()
	host, _, err := net.SplitHostPort(*to)
	if err != nil {
		log.Fatalf("-to: %v", err)
	}
	if !strings.Contains(host, ".") {
		// The allowlist matches full names (short names are expanded to
		// the tailnet's domain before they are checked).
		log.Fatalf("-to: use the full name, e.g. %s.your-tailnet.ts.net", host)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := connector.Start(ctx, connector.Config{
		HostnamePrefix: "dbforward",
		Allow:          dnsfilter.MustParse(*to), // this database, this port, nothing else
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// Every connection is checked against the allowlist, audited and
	// counted by the connector, and closed after an hour without traffic.
	fwd := c.Forward(ln, *to)
	fmt.Printf("forwarding %s -> %s\n", fwd.Addr(), *to)
	<-ctx.Done()
	fwd.Close()
}
