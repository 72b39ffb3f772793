package bench_test

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/bench"
)

func TestWriteSVGDrawsBothLinesOfEachSeriesWithAPointPerSecond(t *testing.T) {
	series := []bench.Series{
		{Label: "1 replica", Seconds: []bench.Second{{Applied: 10, Throttled: 2}, {Applied: 90}, {Applied: 100}}},
		{Label: "3 replicas & more", Seconds: []bench.Second{{Applied: 50}, {Applied: 101, Throttled: 1}}},
	}
	var buf bytes.Buffer
	if err := bench.WriteSVG(&buf, "R = 100 <test>", 100, 2*time.Second, series); err != nil {
		t.Fatal(err)
	}
	var (
		points []int
		texts  []string
	)
	d := xml.NewDecoder(&buf)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if e.Name.Local == "polyline" {
				for _, a := range e.Attr {
					if a.Name.Local == "points" {
						points = append(points, len(strings.Fields(a.Value)))
					}
				}
			}
		case xml.CharData:
			texts = append(texts, string(e))
		}
	}
	if want := []int{3, 3, 2, 2}; !equal(points, want) {
		t.Errorf("polylines with %v points, want %v (applied/s and 429/s per series)", points, want)
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"R = 100 <test>", "1 replica", "3 replicas & more", "applied/s", "429/s", "R = 100/s"} {
		if !strings.Contains(all, want) {
			t.Errorf("no text %q in the figure: %s", want, all)
		}
	}
}

func TestWritePacingSVGsShowsTheMedianRunAndAnOutlier(t *testing.T) {
	run := func(perSec float64) bench.PacingRun {
		return bench.PacingRun{Rate: 10, Replicas: 1, PerSec: perSec, Timeline: []bench.Second{{Applied: int(perSec)}}}
	}
	tests := []struct {
		name      string
		runs      []bench.PacingRun
		polylines int
	}{
		{"close runs show the median only", []bench.PacingRun{run(9.5), run(9.4), run(9.6)}, 2},
		{"a run under 0.9 of the median is shown too", []bench.PacingRun{run(9.5), run(2), run(9.6)}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := bench.PacingReport{
				Config: bench.PacingConfig{Rates: []float64{10}, Duration: time.Second},
				Cells:  []bench.PacingCell{{Rate: 10, Replicas: 1, Runs: tt.runs}},
			}
			files, err := bench.WritePacingSVGs(rep, t.TempDir())
			if err != nil || len(files) != 1 || filepath.Base(files[0]) != "pacing-r10.svg" {
				t.Fatalf("WritePacingSVGs = %v, %v; want pacing-r10.svg", files, err)
			}
			data, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if got := countElements(t, data, "polyline"); got != tt.polylines {
				t.Errorf("%d polylines, want %d", got, tt.polylines)
			}
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
