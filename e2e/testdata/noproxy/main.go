// Command noproxy fetches its argument with an HTTP client that has no
// proxy support at all (TestIsolateNetns): Go's own resolver and dialer.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
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
