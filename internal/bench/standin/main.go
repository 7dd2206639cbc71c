// Command standin is a stand-in for `tsconnect up` in the benchmark: a
// connector with its SOCKS5 + HTTP proxy in a process of its own, so the
// benchmark can measure its RSS, and, unlike cmd/tsconnect, with an
// optional pprof server (--debug-addr) for profiling. It takes the subset of
// `tsconnect up` flags the benchmark passes.
//
//	TS_AUTHKEY=… standin up --listen 127.0.0.1:1055 --control-url URL \
//	    --ready-file F [--hostname H] [--allow LIST] [--debug-addr 127.0.0.1:6060]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on --debug-addr
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tsconnect/tsconnect/connector"
	"github.com/tsconnect/tsconnect/dnsfilter"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "up" {
		fmt.Fprintln(os.Stderr, "standin: usage: standin up --listen ADDR --control-url URL --ready-file FILE [--hostname H] [--allow LIST] [--debug-addr ADDR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("standin up", flag.ExitOnError)
	listen := fs.String("listen", connector.DefaultProxyAddr, "proxy `address`")
	controlURL := fs.String("control-url", "", "coordination server `URL`")
	readyFile := fs.String("ready-file", "", "once ready, write the proxy address to `file`")
	hostname := fs.String("hostname", "", "exact node `name`")
	allow := fs.String("allow", "", "allowlist, comma-separated")
	maxConns := fs.Int("max-conns", 0, "proxy MaxConns (0: the socks default)")
	debugAddr := fs.String("debug-addr", "", "serve net/http/pprof on this loopback `address`")
	fs.String("control-socket", "", "ignored (accepted for parity with tsconnect up)")
	fs.Parse(os.Args[2:])
	log.SetOutput(io.Discard) // tlsdial's warnings about the test certificate

	if *debugAddr != "" {
		ln, err := net.Listen("tcp", *debugAddr)
		if err != nil {
			fatalf("debug listener: %v", err)
		}
		fmt.Printf("debug http://%s/debug/pprof/\n", ln.Addr())
		go http.Serve(ln, nil) // http.DefaultServeMux: net/http/pprof's handlers
	}

	var list *dnsfilter.List
	if *allow != "" {
		var err error
		if list, err = dnsfilter.Parse(*allow); err != nil {
			fatalf("--allow: %v", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := connector.Start(ctx, connector.Config{
		ControlURL: *controlURL,
		Hostname:   *hostname,
		Allow:      list,
		Proxy:      &connector.ProxyConfig{Listen: *listen, MaxConns: *maxConns},
	})
	if err != nil {
		fatalf("%v", err)
	}
	if *readyFile != "" {
		tmp := *readyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(c.ProxyAddr()+"\n"), 0o600); err == nil {
			os.Rename(tmp, *readyFile)
		}
		defer os.Remove(*readyFile)
	}
	fmt.Printf("ready %s %s\n", c.Name(), c.ProxyAddr())
	<-ctx.Done()
	if err := c.Close(); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", filepath.Base(os.Args[0]), strings.TrimSpace(fmt.Sprintf(format, args...)))
	os.Exit(1)
}
