package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"syscall"
)

// envTailscaledDir names a directory holding prebuilt tailscaled and
// tailscale binaries; it overrides the build into the user cache.
const envTailscaledDir = "TSCONNECT_BENCH_TAILSCALED_DIR"

// defaultTailscaleVersion is used only when the build information does not
// name the tailscale.com module (it always does in a test binary).
const defaultTailscaleVersion = "v1.102.5"

// TailscaleVersion is the tailscale.com version this module requires, so
// the tailscaled we compare against runs the same code as our tsnet.
func TailscaleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "tailscale.com" {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return defaultTailscaleVersion
}

// TailscaledBinaries returns the paths of tailscaled and tailscale at
// TailscaleVersion: from $TSCONNECT_BENCH_TAILSCALED_DIR if set, else built
// from the Go module proxy into the user cache directory once (a minute or
// two cold), then reused.
//
// It needs the module proxy when it builds, so it must run before the
// test binary enters the loopback-only namespace (see the TestMain of this
// package).
func TailscaledBinaries() (tailscaled, tailscale string, err error) {
	if d := os.Getenv(envTailscaledDir); d != "" {
		return filepath.Join(d, "tailscaled"), filepath.Join(d, "tailscale"), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	ver := TailscaleVersion()
	dir := filepath.Join(cache, "tsconnect", "tailscaled-"+ver)
	tailscaled, tailscale = filepath.Join(dir, "tailscaled"), filepath.Join(dir, "tailscale")
	if exists(tailscaled) && exists(tailscale) {
		return tailscaled, tailscale, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	// Several test binaries may start at once (go test ./...): one builds,
	// the others wait on the lock and then find the binaries.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", err
	}
	if exists(tailscaled) && exists(tailscale) {
		return tailscaled, tailscale, nil
	}
	// A wrapper module pins tailscale.com at our version; its own go.mod
	// then decides every dependency, exactly as a release build would.
	mod := fmt.Sprintf("module tailscaledbuild\n\ngo 1.26\n\nrequire tailscale.com %s\n", ver)
	tools := "//go:build tools\n\npackage tailscaledbuild\n\nimport (\n\t_ \"tailscale.com/cmd/tailscale\"\n\t_ \"tailscale.com/cmd/tailscaled\"\n)\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "tools.go"), []byte(tools), 0o644); err != nil {
		return "", "", err
	}
	fmt.Fprintf(os.Stderr, "bench: building tailscaled and tailscale %s into %s (a minute or two, once)\n", ver, dir)
	for _, args := range [][]string{
		{"mod", "tidy"},
		{"build", "-o", tailscaled + ".tmp", "tailscale.com/cmd/tailscaled"},
		{"build", "-o", tailscale + ".tmp", "tailscale.com/cmd/tailscale"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("bench: go %v in %s: %v\n%s", args, dir, err, out)
		}
	}
	if err := os.Rename(tailscale+".tmp", tailscale); err != nil {
		return "", "", err
	}
	// tailscaled last: its presence (with tailscale's) marks a finished build.
	return tailscaled, tailscale, os.Rename(tailscaled+".tmp", tailscaled)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
