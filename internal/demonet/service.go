package demonet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tsconnect/tsconnect/internal/peerapi"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tsnet"
)

// serviceSpec describes a service node.
type serviceSpec struct {
	name    string
	tags    []string
	http    func(name string) http.Handler // served on port 80
	tcpPort int                            // if non-zero, tcp is served there
	tcp     func(net.Conn)
}

// node is a running service node.
type node struct {
	svc      *Service
	srv      *tsnet.Server
	dir      string
	accepted atomic.Int64

	mu    sync.Mutex
	lns   []net.Listener
	https []*http.Server
	conns sync.WaitGroup // TCP handlers
}

func startNode(ctx context.Context, controlURL, authKey string, sp serviceSpec, logf func(string, ...any)) (_ *node, reterr error) {
	dir, err := os.MkdirTemp("", "tsconnect-demo-"+sp.name+"-")
	if err != nil {
		return nil, fmt.Errorf("demonet: %w", err)
	}
	nd := &node{dir: dir}
	defer func() {
		if reterr != nil {
			nd.close()
		}
	}()
	nodeLogf := func(f string, a ...any) { logf("demo node "+sp.name+": "+f, a...) }
	nd.srv = &tsnet.Server{
		Dir:           dir,
		Store:         new(mem.Store),
		Hostname:      sp.name,
		Ephemeral:     true,
		AuthKey:       authKey,
		ControlURL:    controlURL,
		AdvertiseTags: sp.tags,
		Logf:          nodeLogf,
		UserLogf:      nodeLogf,
	}
	st, err := nd.up(ctx)
	if err != nil {
		return nil, fmt.Errorf("demonet: service node %q did not join the %s: %w", sp.name, ControlLabel, err)
	}
	// Everything the demo starts listens on 127.0.0.1 only: not the peer
	// API's host socket on 0.0.0.0 either (see internal/peerapi).
	if _, err := peerapi.ShutdownHost(st.Self.PeerAPIURL); err != nil {
		return nil, fmt.Errorf("demonet: service node %q: %w", sp.name, err)
	}
	svc := &Service{
		Name:     sp.name,
		FQDN:     strings.TrimSuffix(st.Self.DNSName, "."),
		Tags:     sp.tags,
		Accepted: nd.accepted.Load,
	}
	svc.IP4, svc.IP6 = nd.srv.TailscaleIPs()

	ln, err := nd.listen(80)
	if err != nil {
		return nil, err
	}
	svc.Ports = append(svc.Ports, 80)
	hs := &http.Server{Handler: sp.http(sp.name), ReadHeaderTimeout: 10 * time.Second, ErrorLog: stdLogger(nodeLogf, "")}
	nd.mu.Lock()
	nd.https = append(nd.https, hs)
	nd.mu.Unlock()
	go hs.Serve(ln)

	if sp.tcpPort != 0 {
		ln, err := nd.listen(sp.tcpPort)
		if err != nil {
			return nil, err
		}
		svc.Ports = append(svc.Ports, sp.tcpPort)
		go nd.serveTCP(ln, sp.tcp)
	}
	nd.svc = svc
	return nd, nil
}

// up starts the node and waits until it has its tailnet addresses, like
// tsnet.Server.Up, and returns its status.
//
// ctx is never handed to the node's LocalAPI. A LocalAPI request cancelled
// just after its connection was made leaves that connection open for
// good: tsnet.Server.Close shuts the LocalAPI server down with
// http.Server.Shutdown, which skips connections younger than 5 s that
// have not sent a request, and closing the in-memory listener does not
// close accepted connections; the goroutines at both ends of it leak. So
// the wait polls the node's addresses, which involves no LocalAPI
// request, and LocalAPI requests get short contexts of their own.
func (nd *node) up(ctx context.Context) (*ipnstate.Status, error) {
	if err := nd.srv.Start(); err != nil {
		return nil, err
	}
	for {
		if ip4, _ := nd.srv.TailscaleIPs(); ip4.IsValid() {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	lc, err := nd.srv.LocalClient()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return lc.StatusWithoutPeers(sctx)
}

// listen listens on the node's tailnet port and counts accepted
// connections.
func (nd *node) listen(port int) (net.Listener, error) {
	ln, err := nd.srv.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, fmt.Errorf("demonet: %w", err)
	}
	nd.mu.Lock()
	nd.lns = append(nd.lns, ln)
	nd.mu.Unlock()
	return countingListener{ln, &nd.accepted}, nil
}

func (nd *node) serveTCP(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		nd.conns.Add(1)
		go func() {
			defer nd.conns.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			handle(c)
		}()
	}
}

func (nd *node) close() error {
	nd.mu.Lock()
	lns, https := nd.lns, nd.https
	nd.mu.Unlock()
	for _, hs := range https {
		hs.Close()
	}
	for _, ln := range lns {
		ln.Close()
	}
	var err error
	if nd.srv != nil {
		err = nd.srv.Close()
	}
	nd.conns.Wait()
	if rerr := os.RemoveAll(nd.dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// webHandler is what "web" serves: the page the demo fetches through the
// connector.
func webHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from %s via the tailnet\n", name)
	})
}

// secretHandler is what "secret-db" serves over HTTP: a page the demo's
// allowlist should keep the agent from ever seeing.
func secretHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s: this service is not on the allowlist; if you can read this, the policy let you through\n", name)
	})
}

// secretTCP greets like a database would, then echoes a line.
func secretTCP(c net.Conn) {
	io.WriteString(c, "secret-db: not on the allowlist\n")
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	c.Write(buf[:n])
}
