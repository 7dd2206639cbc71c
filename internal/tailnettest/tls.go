package tailnettest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ServeHTTPS serves h over TLS on the node's tailnet port, with a
// certificate for the node's short name and FQDN issued by a fresh CA. It
// returns the accepted-connection counter, the CA pool, and the CA's PEM
// file (for curl --cacert, a kubeconfig…).
func (n *Node) ServeHTTPS(tb testing.TB, port int, h http.Handler) (*Counter, *x509.CertPool, string) {
	tb.Helper()
	cert, pool, caPEM, err := issue(n.Name, n.FQDN)
	if err != nil {
		tb.Fatal(err)
	}
	caFile := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	ln, err := n.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		tb.Fatal(err)
	}
	cnt := new(Counter)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.ServeTLS(countingListener{ln, cnt}, "", "")
	tb.Cleanup(func() { srv.Close() })
	return cnt, pool, caFile
}

// issue makes a CA and a server certificate for names.
func issue(names ...string) (tls.Certificate, *x509.CertPool, []byte, error) {
	ca, err := newCA()
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	cert, err := ca.issue(2, names...)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return cert, pool, ca.pem(), nil
}

// WriteCerts writes into dir a fresh CA (ca.pem) and, for each name, a
// server certificate it issued (NAME.crt, NAME.key), for servers such as
// nginx that read files; it returns the CA's file.
func WriteCerts(dir string, names ...string) (string, error) {
	ca, err := newCA()
	if err != nil {
		return "", err
	}
	write := func(file string, data []byte) error { return os.WriteFile(filepath.Join(dir, file), data, 0o600) }
	for i, name := range names {
		cert, err := ca.issue(int64(i+2), name)
		if err != nil {
			return "", err
		}
		key, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
		if err != nil {
			return "", err
		}
		if err := write(name+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})); err != nil {
			return "", err
		}
		if err := write(name+".key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key})); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "ca.pem"), write("ca.pem", ca.pem())
}

// testCA is a certificate authority for one test set-up.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA() (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tsconnect test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}, err
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// issue makes a server certificate for names with the given serial.
func (ca *testCA) issue(serial int64, names ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: names, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
