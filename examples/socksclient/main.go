// Command socksclient is a Go program that uses a running `tsconnect up`
// through its SOCKS5 proxy with golang.org/x/net/proxy. Names are sent to
// the proxy unresolved, so MagicDNS names work and the allowlist sees them.
//
//	tsconnect up --allow .your-tailnet.ts.net &
//	go run ./examples/socksclient -proxy 127.0.0.1:1055 http://grafana/
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"golang.org/x/net/proxy"
)

func main() {
	proxyAddr := flag.String("proxy", "127.0.0.1:1055", "tsconnect proxy address")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: socksclient [-proxy ADDR] URL")
	}
	d, err := proxy.SOCKS5("tcp", *proxyAddr, nil, proxy.Direct)
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext},
	}
	resp, err := hc.Get(flag.Arg(0))
	if err != nil {
		log.Fatal(err) // a denied host: "socks connect … connection not allowed by ruleset"
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s %s\n", resp.Status, body)
}
