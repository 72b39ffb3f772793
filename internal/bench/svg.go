package bench

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Series is one timeline of a figure: a panel of its own.
type Series struct {
	Label   string
	Seconds []Second
}

// Figure layout, in SVG user units.
const (
	svgWidth   = 860
	panelH     = 240
	marginL    = 64
	marginR    = 24
	marginTop  = 56 // title and legend
	panelGap   = 48 // room for the x-axis labels and the next panel's title
	colApplied = "#1f77b4"
	col429     = "#d62728"
	colRate    = "#7f7f7f"
)

// WriteSVG draws each series in a panel of its own: applied/s and 429/s per
// second, a dashed line at rate and, when window > 0, a dotted line where
// the measured window ends. The panels share their axes' scales.
func WriteSVG(w io.Writer, title string, rate float64, window time.Duration, series []Series) error {
	seconds, peak := 1, rate
	for _, s := range series {
		seconds = max(seconds, len(s.Seconds))
		for _, x := range s.Seconds {
			peak = max(peak, float64(x.Applied), float64(x.Throttled))
		}
	}
	yStep := niceStep(peak*1.1, 5)
	yMax := math.Ceil(peak*1.1/yStep) * yStep
	xStep := niceStep(float64(seconds), 8)
	plotW := float64(svgWidth - marginL - marginR)
	height := marginTop + len(series)*(panelH+panelGap)

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", marginL, html.EscapeString(title))
	legend := []struct{ color, label, dash string }{
		{colApplied, "applied/s", ""}, {col429, "429/s (dots: seconds with 429s, and how many)", ""}, {colRate, fmt.Sprintf("R = %g/s", rate), "6 4"}, {colRate, "end of window", "2 3"},
	}
	for i, l := range legend {
		x := marginL + []int{0, 110, 440, 570}[i]
		fmt.Fprintf(b, `<line x1="%d" y1="38" x2="%d" y2="38" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`, x, x+24, l.color, l.dash)
		fmt.Fprintf(b, `<text x="%d" y="42">%s</text>`+"\n", x+30, html.EscapeString(l.label))
	}
	for p, s := range series {
		top := float64(marginTop + p*(panelH+panelGap) + 20)
		bottom := top + panelH - 20
		x := func(sec float64) float64 { return marginL + sec/float64(seconds)*plotW }
		y := func(v float64) float64 { return bottom - v/yMax*(bottom-top) }
		fmt.Fprintf(b, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", marginL, top-8, html.EscapeString(s.Label))
		// Grid and y labels.
		for v := 0.0; v <= yMax+yStep/2; v += yStep {
			fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`, marginL, y(v), svgWidth-marginR, y(v))
			fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginL-6, y(v)+4, num(v))
		}
		for t := 0.0; t <= float64(seconds)+xStep/2; t += xStep {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`, x(t), bottom, x(t), bottom+4)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), bottom+17, num(t))
		}
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">seconds from the first applied write</text>`+"\n", svgWidth-marginR, bottom+32)
		fmt.Fprintf(b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle" fill="#555">calls per second</text>`+"\n", (top+bottom)/2)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333"/>`, marginL, bottom, svgWidth-marginR, bottom)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333"/>`+"\n", marginL, top, marginL, bottom)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="6 4"/>`+"\n", marginL, y(rate), svgWidth-marginR, y(rate), colRate)
		if window > 0 {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="2 3"/>`+"\n", x(window.Seconds()), top, x(window.Seconds()), bottom, colRate)
		}
		// One point per second, at the middle of its second.
		for _, line := range []struct {
			color string
			value func(Second) int
		}{{colApplied, func(s Second) int { return s.Applied }}, {col429, func(s Second) int { return s.Throttled }}} {
			pts := make([]string, len(s.Seconds))
			for i, sec := range s.Seconds {
				pts[i] = fmt.Sprintf("%.1f,%.1f", x(float64(i)+0.5), y(float64(line.value(sec))))
			}
			fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", line.color, strings.Join(pts, " "))
		}
		// 429s are few next to the applied writes: mark each second that
		// had any, with its count, so that they show at every scale.
		for i, sec := range s.Seconds {
			if sec.Throttled == 0 {
				continue
			}
			cx, cy := x(float64(i)+0.5), y(float64(sec.Throttled))
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, cx, cy, col429)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="%s">%d</text>`+"\n", cx, cy-6, col429, sec.Throttled)
		}
	}
	fmt.Fprintln(b, "</svg>")
	return b.Flush()
}

// niceStep returns a step of 1, 2 or 5 × 10^k that cuts span into at most
// about n intervals.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// outlier is how far under its cell's median a run must fall for the
// figure to show it too: an operator should see that it happens.
const outlier = 0.9

// WritePacingSVGs writes <SVGName>-r<R>.svg (pacing-r<R>.svg by default) per rate into dir: for each replica
// count its median run, and also its worst run when that one applied less
// than 0.9 of the median. It returns the files written.
func WritePacingSVGs(rep PacingReport, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, rate := range rep.Config.Rates {
		var series []Series
		for _, c := range rep.Cells {
			if c.Rate != rate || len(c.Runs) == 0 {
				continue
			}
			m := c.median()
			label := fmt.Sprintf("%s: %.1f applied/s (%.2f R) in the window, %.2f %% of write calls answered 429 (median run of %d)",
				plural(c.Replicas, "replica"), m.PerSec, m.PerSec/rate, 100*m.ThrottleShare, len(c.Runs))
			if m.Target > 0 {
				label = fmt.Sprintf("%s: %d commands applied in %.2fs (target %.2fs), %.2f %% of write calls answered 429 (median run of %d)",
					plural(c.Replicas, "replica"), m.Backlog, m.Completion.Seconds(), m.Target.Seconds(), 100*m.ThrottleShare, len(c.Runs))
			}
			series = append(series, Series{Label: label, Seconds: m.Timeline})
			if w := c.worst(); w.PerSec < outlier*m.PerSec {
				label := fmt.Sprintf("%s, the worst of %d runs: %.1f applied/s (%.2f R) in the window, %.2f %% answered 429",
					plural(c.Replicas, "replica"), len(c.Runs), w.PerSec, w.PerSec/rate, 100*w.ThrottleShare)
				series = append(series, Series{Label: label, Seconds: w.Timeline})
			}
		}
		prefix := rep.Config.SVGName
		if prefix == "" {
			prefix = "pacing"
		}
		name := filepath.Join(dir, prefix+"-r"+num(rate)+".svg")
		f, err := os.Create(name)
		if err != nil {
			return files, err
		}
		cfg := rep.Config
		burst := cfg.Burst
		if burst == 0 {
			burst = max(1, int(math.Ceil(rate/10)))
		}
		title := fmt.Sprintf("Pacing against a stand-in allowing R = %g writes/s (burst %d, throttled calls charged)", rate, burst)
		if cfg.OtherShare > 0 {
			title += fmt.Sprintf(", %.0f %% spent by another application", 100*cfg.OtherShare)
		}
		if cfg.Latency > 0 || cfg.Jitter > 0 {
			title += fmt.Sprintf(", latency %s–%s", cfg.Latency, cfg.Latency+cfg.Jitter)
		}
		if cfg.LimitWarning {
			title += ", early warning"
		}
		window := cfg.Duration
		if cfg.Backlog > 0 {
			window = time.Duration(float64(cfg.Backlog) / (rate * (1 - cfg.OtherShare)) * float64(time.Second))
		}
		err = WriteSVG(f, title, rate*(1-cfg.OtherShare), window, series)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}
