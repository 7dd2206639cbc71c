package demonet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// relay is the demo's DERP relay and STUN server, both on 127.0.0.1.
type relay struct {
	derpMap *tailcfg.DERPMap

	derp     *derpserver.Server
	srv      *http.Server
	conns    *hijackTracker
	stun     *net.UDPConn
	stunDone chan struct{}
}

// regionID is the demo relay's DERP region. One region is enough: with
// IPv6 "none", netcheck plans no probe that could go unanswered, and its
// report is ready within milliseconds (the three-region trick of
// internal/tailnettest made no measurable difference here).
const regionID = 900

func startRelay(logf func(string, ...any)) (_ *relay, reterr error) {
	r := &relay{stunDone: make(chan struct{})}
	defer func() {
		if reterr != nil {
			r.close()
		}
	}()

	var err error
	r.stun, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		close(r.stunDone)
		return nil, fmt.Errorf("demonet: starting the demo STUN server: %w", err)
	}
	go r.serveSTUN()

	cert, certHash, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("demonet: making the demo DERP certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demonet: starting the demo DERP relay: %w", err)
	}
	r.derp = derpserver.New(key.NewNode(), func(f string, a ...any) { logf("demo derp: "+f, a...) })
	r.conns = newHijackTracker()
	r.srv = &http.Server{
		Handler:           derpserver.Handler(r.derp),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         r.conns.connState,
		ErrorLog:          stdLogger(logf, "demo derp: "),
		// DERP is an HTTP/1.1 upgrade; no HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go r.srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))

	derpPort := ln.Addr().(*net.TCPAddr).Port
	stunPort := r.stun.LocalAddr().(*net.UDPAddr).Port
	r.derpMap = &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		regionID: {
			RegionID:   regionID,
			RegionCode: "demo",
			RegionName: "demo loopback relay (not for production)",
			Nodes: []*tailcfg.DERPNode{{
				Name:     "demo1",
				RegionID: regionID,
				HostName: "127.0.0.1",
				IPv4:     "127.0.0.1",
				IPv6:     "none", // it listens on 127.0.0.1 only
				STUNPort: stunPort,
				DERPPort: derpPort,
				// Nodes check the relay's certificate by its hash;
				// no CA is involved and none is trusted.
				CertName: "sha256-raw:" + certHash,
			}},
		},
	}}
	return r, nil
}

// serveSTUN answers STUN binding requests with the sender's address,
// which on loopback is 127.0.0.1.
func (r *relay) serveSTUN() {
	defer close(r.stunDone)
	buf := make([]byte, 64<<10)
	for {
		n, src, err := r.stun.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pkt := buf[:n]
		if !stun.Is(pkt) {
			continue
		}
		txid, err := stun.ParseBindingRequest(pkt)
		if err != nil {
			continue
		}
		r.stun.WriteToUDPAddrPort(stun.Response(txid, netip.AddrPortFrom(src.Addr().Unmap(), src.Port())), src)
	}
}

func (r *relay) close() error {
	var errs []error
	if r.srv != nil {
		if err := r.srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.derp != nil {
		// Closes the connections the relay accepted (hijacked from the
		// HTTP server) and waits for them.
		r.derp.Close()
	}
	if r.conns != nil {
		r.conns.closeAll()
	}
	if r.stun != nil {
		r.stun.Close()
		<-r.stunDone
	}
	return errors.Join(errs...)
}

// selfSignedCert makes a certificate for 127.0.0.1 and returns it with
// the hex SHA-256 of its DER encoding, which clients pin.
func selfSignedCert() (tls.Certificate, string, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "tsconnect demo relay (not for production)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, fmt.Sprintf("%x", sum), nil
}

// hijackTracker remembers the connections an http.Server handed over to a
// handler (DERP, the control protocol), which Server.Close leaves open.
type hijackTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newHijackTracker() *hijackTracker { return &hijackTracker{conns: map[net.Conn]bool{}} }

func (t *hijackTracker) connState(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case http.StateHijacked:
		t.conns[c] = true
	case http.StateClosed:
		delete(t.conns, c)
	}
}

func (t *hijackTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
	clear(t.conns)
}

// stdLogger adapts logf for http.Server.ErrorLog.
func stdLogger(logf func(string, ...any), prefix string) *log.Logger {
	return log.New(logWriter{logf, prefix}, "", 0)
}

type logWriter struct {
	logf   func(string, ...any)
	prefix string
}

func (w logWriter) Write(p []byte) (int, error) {
	w.logf("%s%s", w.prefix, p)
	return len(p), nil
}
