// Command noproxy fetches its argument with an HTTP client that has no
// proxy support at all (TestIsolateNetns): Go's own resolver and dialer.
// "noproxy dns NAME" looks NAME up and prints the addresses, "not found"
// (NXDOMAIN) or the resolver's error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "dns" {
		addrs, err := net.DefaultResolver.LookupHost(context.Background(), os.Args[2])
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			fmt.Println("not found")
		case err != nil:
			fmt.Println("error:", err)
		default:
			fmt.Println(addrs)
		}
		return
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Println("noproxy:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s\n", b)
}
