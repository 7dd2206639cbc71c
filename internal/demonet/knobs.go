package demonet

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"

	"tailscale.com/envknob"
	"tailscale.com/feature/buildfeatures"
	"tailscale.com/logtail"
	"tailscale.com/net/netns"
)

// knobs are set with envknob.Setenv, which also updates the knobs that
// tailscale registered when the process started (TS_DEBUG_*,
// TS_DISABLE_PORTMAPPER); the others are read from the environment on each
// use. None needs to be in the environment when the process starts. See
// ApplyKnobs for what each does.
var knobs = []string{
	"TS_DEBUG_OMIT_LOCAL_ADDRS",
	"TS_DEBUG_NEVER_DIRECT_UDP",
	"TS_DISABLE_PORTMAPPER",
	"TS_NO_LOGS_NO_SUPPORT",
	"TS_ASSUME_NETWORK_UP_FOR_TEST",
}

var (
	knobsOnce sync.Once
	// testHookNoGuards, set by tests of the leak detector, leaves out the
	// knobs and the control plane's endpoint filter.
	testHookNoGuards bool
)

// ApplyKnobs makes the process-wide settings that keep every tailnet node
// of the process on loopback, as [Start] does first. A process that runs
// a node against the demo tailnet without calling Start (a connector in a
// separate process) calls it before starting its node. The settings:
//
//   - TS_DEBUG_OMIT_LOCAL_ADDRS: nodes do not offer the machine's interface
//     addresses as endpoints; peers would send disco pings and WireGuard
//     packets to them.
//   - TS_DEBUG_NEVER_DIRECT_UDP: no disco pings to a peer's UDP endpoints,
//     whatever endpoints a node hears of; peers talk through the relay.
//   - TS_DISABLE_PORTMAPPER: no UPnP, NAT-PMP or PCP probes of the gateway.
//   - TS_NO_LOGS_NO_SUPPORT and logtail.Disable: no log upload, and no DNS
//     lookup of log.tailscale.com.
//   - TS_ASSUME_NETWORK_UP_FOR_TEST: nodes join even when the machine is
//     offline; without it they wait for a network that does not matter.
//   - netns.SetEnabled(false): tailscale's socket hooks otherwise bind
//     sockets to the default route's interface when they cannot mark them,
//     and send TCP through $ALL_PROXY when it is set, even to 127.0.0.1.
//
// It is safe to call more than once; only the first call does anything.
// envknob.Setenv is not safe while nodes read knobs, so call it before
// starting the process's first node.
func ApplyKnobs() {
	if testHookNoGuards {
		return
	}
	knobsOnce.Do(func() {
		for _, k := range knobs {
			envknob.Setenv(k, "true")
		}
		// Log upload also has a switch of its own.
		logtail.Disable()
		// netns keeps tailscaled's own sockets off its TUN device.
		// Userspace nodes have no TUN device and every demo server is
		// on loopback, so it is turned off, as tsnet's own tests do.
		netns.SetEnabled(false)
	})
}

// checkCloud refuses to start on a machine where tailscale would query a
// cloud metadata service (169.254.169.254): on AWS, it asks for the
// instance's public addresses to offer them as endpoints; on Azure-like and
// older Google VMs, it probes the service to find out which cloud it is on.
// The same clues as tailscale's util/cloudenv are read, without the probe.
func checkCloud() error {
	if !buildfeatures.HasCloud || runtime.GOOS != "linux" {
		return nil
	}
	read := func(name string) string {
		b, _ := os.ReadFile("/sys/class/dmi/id/" + name)
		return strings.TrimSpace(string(b))
	}
	bios, prod := read("bios_vendor"), read("product_name")
	if bios == "Amazon EC2" || strings.HasSuffix(bios, ".amazon") ||
		prod == "Google" || prod == "Virtual Machine" || bios == "Microsoft Corporation" {
		return errors.New("demonet: this machine looks like a cloud VM, where tailscale queries the instance metadata service (169.254.169.254) and the demo could not stay on loopback; " +
			"build tsconnect with -tags ts_omit_cloud to run the demo here")
	}
	return nil
}
