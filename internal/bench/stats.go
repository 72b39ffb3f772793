package bench

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Range summarizes repeated measurements of one figure.
type Range struct {
	Median, Min, Max float64
}

// rangeOf returns the median, minimum and maximum of xs (zero for none).
func rangeOf(xs []float64) Range {
	if len(xs) == 0 {
		return Range{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Range{Median: median(s), Min: s[0], Max: s[len(s)-1]}
}

// median of sorted values; the mean of the two middle ones for an even count.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile returns the p-th percentile (0 < p ≤ 100) of ds by the
// nearest-rank method: the smallest value with at least p % of the values at
// or below it.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs      int
	Model     string // /proc/cpuinfo "model name"
	GoVersion string
	OS, Arch  string
	MemTotal  string // /proc/meminfo MemTotal
}

// ThisMachine reads the machine's description; fields it cannot read stay
// empty.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.Model = procField(string(b), "model name")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotal = procField(string(b), "MemTotal")
	}
	return m
}

func (m Machine) String() string {
	s := strconv.Itoa(m.CPUs) + " CPUs"
	if m.Model != "" {
		s += " (" + m.Model + ")"
	}
	if m.MemTotal != "" {
		s += ", " + m.MemTotal + " RAM"
	}
	return s + ", " + m.GoVersion + " " + m.OS + "/" + m.Arch
}

// procField returns the value of the first "name : value" line.
func procField(text, name string) string {
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// LoadAvg is the 1-minute load average of /proc/loadavg, or -1 where it
// cannot be read. The machine is shared: it says how noisy a measurement was.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
