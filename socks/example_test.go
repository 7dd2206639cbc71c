package socks_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/tsconnect/tsconnect/socks"
)

type notAllowed struct{ host string }

func (e notAllowed) Error() string        { return e.host + " is not on the allowlist" }
func (e notAllowed) Denied() bool         { return true }
func (e notAllowed) RuleName() string     { return "" } // no rule decided
func (e notAllowed) DenialReason() string { return "no rule matches" }

func ExampleListen() {
	// Stands in for a service inside the tailnet.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	}))
	defer backend.Close()

	s, err := socks.Listen(socks.Config{
		Addr: "127.0.0.1:0",
		Check: func(host string, port uint16) error {
			if host != "wiki.example.ts.net" {
				return notAllowed{host}
			}
			return nil
		},
		Expand: func(host string) string {
			if host == "wiki" {
				return "wiki.example.ts.net" // a MagicDNS short name
			}
			return host
		},
		// The connector dials through the tailnet; here, the backend.
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, backend.Listener.Addr().String())
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	proxyURL := &url.URL{Scheme: "http", Host: s.Addr().String()}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	for _, u := range []string{"http://wiki/", "http://evil.example.com/"} {
		res, err := client.Get(u)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Printf("%d %s", res.StatusCode, body)
	}
	// Output:
	// 200 hello from wiki
	// 403 tsconnect: "evil.example.com:80" not allowed: no rule matches
}
