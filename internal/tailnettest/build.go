package tailnettest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

const (
	// HeadscaleVersion is the control server the tests run.
	HeadscaleVersion = "v0.29.1"

	envHeadscale = "TSCONNECT_HEADSCALE"
	envTLSCert   = "TSCONNECT_TEST_TLS_CERT"
	envTLSKey    = "TSCONNECT_TEST_TLS_KEY"
)

// HeadscaleBinary returns the path of a Headscale binary: $TSCONNECT_HEADSCALE
// if set, else one built from the Go module proxy into the user cache
// directory (built once, then reused).
func HeadscaleBinary() (string, error) {
	if p := os.Getenv(envHeadscale); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "tsconnect", "headscale-"+HeadscaleVersion)
	bin := filepath.Join(dir, "headscale")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// go test ./... runs several test binaries at once: one builds, the
	// others wait for it.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// `go install …@version` does not work for Headscale (the proxy
	// refuses its version list), so build it from a wrapper module.
	mod := fmt.Sprintf("module headscalebuild\n\ngo 1.26\n\nrequire github.com/juanfont/headscale %s\n", HeadscaleVersion)
	tools := "//go:build tools\n\npackage headscalebuild\n\nimport _ \"github.com/juanfont/headscale/cmd/headscale\"\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "tools.go"), []byte(tools), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "tailnettest: building headscale %s into %s (a few minutes, once)\n", HeadscaleVersion, dir)
	tmp := bin + ".tmp"
	for _, args := range [][]string{
		{"mod", "tidy"},
		{"build", "-o", tmp, "github.com/juanfont/headscale/cmd/headscale"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %v: %v\n%s", args, err, out)
		}
	}
	return bin, os.Rename(tmp, bin)
}

// writeSelfSignedCert writes a self-signed certificate for 127.0.0.1 and
// localhost, valid for a day.
func writeSelfSignedCert(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "tsconnect test control plane"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// GoBuild builds this module's package pkg (a path as `go build` takes
// it, relative to the current directory) into out, with env added to the
// environment. It calls WatchSources first, so a test that runs what it
// built is never replayed from the cache for changed code.
func GoBuild(out, pkg string, env ...string) error {
	WatchSources()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// WatchSources stats every Go source file of this module, plus go.mod and
// go.sum, so that `go test` caches a test result only while none of them
// changed. Tests that build and run this module's binaries (tsconnect,
// the examples) need it: the go command does not see what a child `go
// build` reads, and would otherwise replay a pass for old code. Call it
// from a test (the go command's file log starts with m.Run).
func WatchSources() { watchOnce.Do(watchSources) }

var watchOnce sync.Once

func watchSources() {
	dir, err := os.Getwd()
	if err != nil {
		return
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return
		}
		dir = parent
	}
	os.Stat(filepath.Join(dir, "go.sum"))
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p != dir && (d.Name() == "testdata" || d.Name()[0] == '.') {
			return filepath.SkipDir
		}
		if !d.IsDir() && filepath.Ext(p) == ".go" {
			os.Stat(p)
		}
		return nil
	})
}
