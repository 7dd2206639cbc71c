package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// TestMain builds (or finds) tailscaled while the module proxy is still
// reachable, then runs the tests in the loopback-only namespace.
func TestMain(m *testing.M) {
	if !tailnettest.InNamespace() {
		if _, _, err := TailscaledBinaries(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: cannot get tailscaled: %v\n", err)
			os.Exit(2)
		}
	}
	tailnettest.Main(m)
}
