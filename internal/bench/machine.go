package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine is what the figures depend on besides the code.
type Machine struct {
	CPUs       int
	CPUModel   string
	MemTotal   string
	GoVersion  string
	Kernel     string
	Tailscale  string // tailscale.com version of tsnet and of the tailscaled built
	LoadBefore string // /proc/loadavg when the run started
}

func machineFacts() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Tailscale: TailscaleVersion(), LoadBefore: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// AllowCost is one case of dnsfilter's BenchmarkCheck.
type AllowCost struct {
	Case     string
	NsPerOp  float64
	BPerOp   int64
	AllocsOp int64
}

// allowCost runs dnsfilter's own BenchmarkCheck (the allowlist decision
// for a 50-rule list) rather than a copy of it, and parses its output.
func allowCost() ([]AllowCost, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkCheck$", "-benchmem", "-count", "1",
		"github.com/tsconnect/tsconnect/dnsfilter")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench BenchmarkCheck ./dnsfilter: %v\n%s", err, out)
	}
	var res []AllowCost
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[0], "BenchmarkCheck/") || f[3] != "ns/op" {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkCheck/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the GOMAXPROCS suffix
		}
		ns, _ := strconv.ParseFloat(f[2], 64)
		b, _ := strconv.ParseInt(f[4], 10, 64)
		a, _ := strconv.ParseInt(f[6], 10, 64)
		res = append(res, AllowCost{Case: name, NsPerOp: ns, BPerOp: b, AllocsOp: a})
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no BenchmarkCheck results in:\n%s", out)
	}
	return res, nil
}
