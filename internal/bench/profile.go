package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profile runs the stand-in (with its pprof server) and tailscaled (with
// --debug) under each workload for cfg.ProfileTime while taking a CPU
// profile of the proxy process, then saves heap and allocation profiles
// and the stand-in's GC trace. cmd/tsconnect has no profiling hook on
// purpose, so the stand-in, which runs the same connector.Start with a
// proxy, stands for it.
func (r *runner) profile(ctx context.Context) ([]string, error) {
	if err := os.MkdirAll(r.cfg.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	standin := filepath.Join(r.dir, "standin")
	if err := goBuild(standin, pkgStandin); err != nil {
		return nil, err
	}
	var files []string
	for _, who := range []string{"tsconnect", "tailscaled"} {
		if who == "tailscaled" && r.tailscaled == "" {
			var err error
			if r.tailscaled, r.tailscale, err = TailscaledBinaries(); err != nil {
				return files, err
			}
		}
		f, err := r.profileOne(ctx, who, standin)
		files = append(files, f...)
		if err != nil {
			return files, err
		}
	}
	return files, nil
}

func (r *runner) profileOne(ctx context.Context, who, standin string) (files []string, err error) {
	key, err := r.newKey()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(r.dir, "profile-"+who+"-")
	if err != nil {
		return nil, err
	}
	socks, err1 := freeAddr()
	httpAddr, err2 := freeAddr()
	debug, err3 := freeAddr()
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, fmt.Errorf("bench: no free ports: %v %v %v", err1, err2, err3)
	}
	name := "bench-profile-" + who
	var p *proc
	if who == "tsconnect" {
		p, err = startTSConnect(standin, dir, r.ctl.URL, key, socks, name, r.target, []string{"GODEBUG=gctrace=1"}, "--debug-addr", debug)
		httpAddr = socks
	} else {
		p, err = startTailscaled(r.tailscaled, r.tailscale, dir, r.ctl.URL, key, socks, httpAddr, name, "--debug="+debug)
		if err == nil {
			upCtx, cancel := context.WithTimeout(ctx, time.Minute)
			err = p.tailscaleUp(upCtx)
			cancel()
		}
	}
	if p != nil {
		defer p.stop(30 * time.Second)
	}
	if err != nil {
		return nil, err
	}
	s5 := socks5Dialer(socks, r.target)
	if err := firstByte(ctx, s5, p); err != nil {
		return nil, err
	}
	r.awaitDirect(ctx, name, s5)
	base := "http://" + debug + "/debug/pprof/"
	for _, w := range []struct {
		name string
		dial Dialer
		op   string
	}{
		{"socks5-down", s5, "down"},
		{"socks5-up", s5, "up"},
		{"connect-down", connectDialer(httpAddr, r.target), "down"},
		{"socks5-newconn", s5, "conn"},
	} {
		file := filepath.Join(r.cfg.ProfileDir, fmt.Sprintf("%s-%s.cpu.pprof", who, w.name))
		wctx, stop := context.WithCancel(ctx)
		done := make(chan string, 1)
		go func() { done <- r.loadLoop(wctx, w.dial, w.op) }()
		err := fetch(ctx, fmt.Sprintf("%sprofile?seconds=%d", base, int(r.cfg.ProfileTime.Seconds())), file)
		stop()
		r.cfg.Logf("bench: profile %s %s: %s", who, w.name, <-done)
		if err != nil {
			return files, err
		}
		files = append(files, file)
	}
	if who == "tsconnect" { // tailscaled's debug server has no heap handler besides Index
		for _, prof := range []string{"heap", "allocs"} {
			file := filepath.Join(r.cfg.ProfileDir, fmt.Sprintf("%s.%s.pprof", who, prof))
			if err := fetch(ctx, base+prof, file); err != nil {
				return files, err
			}
			files = append(files, file)
		}
	}
	p.stop(30 * time.Second)
	log := filepath.Join(r.cfg.ProfileDir, who+".log")
	if b, err := os.ReadFile(p.logFile); err == nil && os.WriteFile(log, b, 0o644) == nil {
		files = append(files, log)
	}
	return files, nil
}

// loadLoop keeps one kind of load going until ctx ends and describes how
// much it carried.
func (r *runner) loadLoop(ctx context.Context, dial Dialer, op string) string {
	t0 := time.Now()
	var bytes int64
	var conns, errs int
	for ctx.Err() == nil {
		if op == "conn" {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if pingOnce(cctx, dial) != nil {
				errs++
			}
			cancel()
			conns++
			continue
		}
		c, err := dial(ctx)
		if err != nil {
			errs++
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		var n int64
		if op == "up" {
			if err = upload(c, r.cfg.Bulk); err == nil {
				n = r.cfg.Bulk
			}
		} else {
			n, err = download(c, r.cfg.Bulk, false)
		}
		stop()
		c.Close()
		bytes += n
		if err != nil && ctx.Err() == nil {
			errs++
		}
	}
	d := time.Since(t0)
	if op == "conn" {
		return fmt.Sprintf("%d connections in %v (%.2f ms each), %d errors", conns, d.Round(time.Millisecond), float64(d)/float64(time.Millisecond)/float64(max(conns, 1)), errs)
	}
	return fmt.Sprintf("%.0f MB/s over %v (%d errors)", float64(bytes)/d.Seconds()/1e6, d.Round(time.Millisecond), errs)
}

func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("bench: GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
