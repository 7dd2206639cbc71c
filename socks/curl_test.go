package socks

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestCurl drives the real curl binary through the proxy, with a made-up
// host name that only the fake Dial knows: the name, not an address, must
// reach Dial.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	fn := newFakeNet()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("Proxy-Authorization reached the target")
		}
		io.WriteString(w, "hello "+r.Host+r.URL.Path)
	}))
	defer upstream.Close()
	fn.add("web.test", upstream.Listener.Addr().String())
	open := startProxy(t, fn, Config{})
	authed := startProxy(t, fn, Config{Username: "agent", Password: "s3cret"})

	for _, tc := range []struct {
		name string
		s    *Server
		args []string // PROXY is replaced by the proxy's address
		want string
	}{
		{"socks5-hostname", open, []string{"--socks5-hostname", "PROXY"}, "hello web.test/curl"},
		{"socks5h auth", authed, []string{"-x", "socks5h://agent:s3cret@PROXY"}, "hello web.test/curl"},
		{"socks5h wrong auth", authed, []string{"-x", "socks5h://agent:nope@PROXY"}, "curl: ("},
		{"http proxy", open, []string{"-x", "http://PROXY"}, "hello web.test/curl"},
		{"http proxy auth", authed, []string{"-x", "http://PROXY", "--proxy-user", "agent:s3cret"}, "hello web.test/curl"},
		{"http proxy no auth", authed, []string{"-x", "http://PROXY", "-w", "%{http_code}", "-o", "/dev/null"}, "407"},
		{"http connect tunnel", open, []string{"-p", "-x", "http://PROXY"}, "hello web.test/curl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fn.dials())
			args := []string{"-q", "-sS", "--max-time", "10", "--noproxy", ""}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "PROXY", tc.s.Addr().String()))
			}
			args = append(args, "http://web.test/curl")
			cmd := exec.Command(curl, args...)
			// No http_proxy, NO_PROXY or .curlrc from the developer's
			// environment.
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("curl %q: %v\n%s\nwant %q", args, err, out, tc.want)
			}
			want := []string{"web.test:80"}
			if !strings.HasPrefix(tc.want, "hello") {
				want = nil
			}
			if got := fn.dials()[before:]; !slices.Equal(got, want) {
				t.Errorf("Dial saw %q, want %q", got, want)
			}
		})
	}
}
