//go:build unix

package connector

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// privateDirPattern names the private directory after the process, so a
// later connector can tell whose it is: tsconnect-<pid>-<random>.
func privateDirPattern() string { return "tsconnect-" + strconv.Itoa(os.Getpid()) + "-" }

// removeStaleDirs removes private directories that connectors of dead
// processes left in the temp directory: a process killed with SIGKILL
// cannot remove its own. Only directories of this user whose process is
// gone are removed. Errors are ignored: this is housekeeping.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "tsconnect-*-*"))
	for _, d := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "tsconnect-"), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive (or not ours to signal): leave it
		}
		os.RemoveAll(d)
	}
}
