package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

const versionUsage = `Usage: tsconnect version

Print the versions of tsconnect, the Go toolchain that built it and the
tailscale.com module it embeds.

Example:
  tsconnect version
`

func cmdVersion(ctx context.Context, args []string, sio stdio) int {
	fs := newFlagSet("version", versionUsage)
	if code, done := fs.parse(args, sio); done {
		return code
	}
	if fs.NArg() > 0 {
		return sio.fail(usageErrorf("version", "unexpected argument %q", fs.Arg(0)))
	}
	v, ts := version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version // go install …@version
		}
		for _, d := range bi.Deps {
			if d.Path == "tailscale.com" {
				ts = d.Version
				if d.Replace != nil {
					ts += " => " + d.Replace.Path + " " + d.Replace.Version
				}
			}
		}
	}
	fmt.Fprintf(sio.Out, "tsconnect %s\n%s %s/%s\ntailscale.com %s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, ts)
	return exitOK
}
