package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tsconnect/tsconnect/internal/tailnettest"
)

// Flags of the full benchmark (TestBench). Unset flags take FullConfig's
// values.
var (
	flagFull         = flag.Bool("full", os.Getenv("TSCONNECT_BENCH") == "1", "run TestBench, the full benchmark (also: TSCONNECT_BENCH=1)")
	flagBulk         = flag.Int64("bulk", 0, "MiB per bulk transfer, each direction (default 256)")
	flagBulkReps     = flag.Int("bulk-reps", 0, "bulk transfers per direction; the median is reported (default 3)")
	flagConns        = flag.Int("conns", 0, "sequential new connections for latency and stalls (default 3000)")
	flagConcurrent   = flag.Int("concurrent", 0, "connections held at once (default 1000)")
	flagHold         = flag.Duration("hold", 0, "how long the concurrent connections are held (default 10s)")
	flagIdle         = flag.Duration("idle", 0, "idle time before the second after-load RSS (default 30s)")
	flagTeardownWait = flag.Duration("teardown-wait", 0, "how long to wait for a node to leave the node list (default 200s)")
	flagColumns      = flag.String("columns", "", "comma-separated columns to run (default all: "+strings.Join(AllColumns, ",")+")")
	flagTSConnect    = flag.String("tsconnect", "", "binary for the tsconnect columns: auto, cmd or standin (default auto)")
	flagProfile      = flag.String("profile", "", "directory: also profile the stand-in and tailscaled under load and save the profiles there")
	flagProfileTime  = flag.Duration("profile-time", 0, "length of each CPU profile (default 10s)")
	flagVerify       = flag.Bool("verify", false, "check every downloaded byte (costs client CPU)")
	flagOut          = flag.String("out", "", "also write the report (markdown) to this file")
	flagTSFlags      = flag.String("tsconnect-flags", "", "space-separated flags added to the tsconnect columns' command (e.g. --opaque-tunnels)")
)

// TestSmoke runs every column with tiny sizes and checks that each
// carried exactly the bytes and connections asked for. It asserts no
// timing: the figures are for TestBench to report.
func TestSmoke(t *testing.T) {
	if *flagFull {
		t.Skip("TestBench runs instead")
	}
	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{})
	cfg := SmokeConfig()
	cfg.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, ctl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(AllColumns) {
		t.Fatalf("%d columns measured, want %d", len(rep.Results), len(AllColumns))
	}
	for _, r := range rep.Results {
		for _, err := range r.Errs {
			t.Errorf("%s: %v", r.Column, err)
		}
		want := cfg.Bulk * int64(cfg.BulkReps)
		if r.DownBytes != want || r.UpBytes != want {
			t.Errorf("%s: carried %d bytes down and %d up, want %d each", r.Column, r.DownBytes, r.UpBytes, want)
		}
		if len(r.Lat) != cfg.Conns || r.ConnErrors != 0 {
			t.Errorf("%s: %d of %d sequential connections answered (%d errors)", r.Column, len(r.Lat), cfg.Conns, r.ConnErrors)
		}
		if r.ConcOK != cfg.Concurrent || r.ConcErrors != 0 {
			t.Errorf("%s: %d of %d concurrent connections answered after the hold (%d errors)", r.Column, r.ConcOK, cfg.Concurrent, r.ConcErrors)
		}
		proc := strings.HasPrefix(r.Column, "tsconnect") || strings.HasPrefix(r.Column, "tailscaled")
		if proc && (r.RSSIdle == 0 || r.RSSLoad == 0 || r.RSSConc == 0) {
			t.Errorf("%s: no RSS reading of the proxy process", r.Column)
		}
	}
	t.Logf("smoke figures (tiny sizes, not meaningful):\n%s", rep.Markdown("go test ./internal/bench -run TestSmoke"))
}

// TestBench is the full benchmark. It runs only with -full (or
// TSCONNECT_BENCH=1) and prints a markdown report; the package
// documentation has the command lines.
func TestBench(t *testing.T) {
	if !*flagFull {
		t.Skip("the full benchmark runs with -full or TSCONNECT_BENCH=1: go test ./internal/bench -run TestBench -full -v -timeout 60m")
	}
	cfg := FullConfig()
	if *flagBulk > 0 {
		cfg.Bulk = *flagBulk << 20
	}
	setIf(&cfg.BulkReps, *flagBulkReps)
	setIf(&cfg.Conns, *flagConns)
	setIf(&cfg.Concurrent, *flagConcurrent)
	setIf(&cfg.Hold, *flagHold)
	setIf(&cfg.IdleWait, *flagIdle)
	setIf(&cfg.TeardownWait, *flagTeardownWait)
	setIf(&cfg.TSConnect, *flagTSConnect)
	setIf(&cfg.ProfileDir, *flagProfile)
	setIf(&cfg.ProfileTime, *flagProfileTime)
	cfg.Verify = *flagVerify
	cfg.TSFlags = strings.Fields(*flagTSFlags)
	if *flagColumns != "" {
		cfg.Columns = strings.Split(*flagColumns, ",")
	}
	cfg.Logf = t.Logf

	ctl := tailnettest.StartControl(t, tailnettest.ControlOptions{})
	rep, err := Run(context.Background(), ctl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	md := rep.Markdown(commandLine())
	fmt.Println("\n" + md)
	if *flagOut != "" {
		if err := os.WriteFile(*flagOut, []byte(md), 0o644); err != nil {
			t.Error(err)
		}
	}
	// Errors are findings, listed in the report; the run itself succeeded.
}

func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// commandLine reconstructs the go test command that ran, with the
// benchmark's flags as given.
func commandLine() string {
	var extra []string
	flag.Visit(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "test.") {
			extra = append(extra, fmt.Sprintf("-%s=%s", f.Name, f.Value))
		}
	})
	cmd := "go test ./internal/bench -run TestBench -v -timeout 60m"
	if os.Getenv("TSCONNECT_BENCH") == "1" {
		cmd = "TSCONNECT_BENCH=1 " + cmd
	}
	if len(extra) > 0 {
		cmd += " " + strings.Join(extra, " ")
	}
	return cmd
}
