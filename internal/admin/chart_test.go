package admin

import (
	"encoding/xml"
	"io"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestNiceCeil(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{
		{0, 1}, {-3, 1}, {math.NaN(), 1}, {math.Inf(1), 1},
		{0.3, 0.5}, {1, 1}, {1.01, 2}, {2, 2}, {3, 5}, {7, 10}, {10, 10}, {11, 20}, {480, 500}, {501, 1000},
	} {
		if got := niceCeil(tc.in); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("niceCeil(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0"}, {3, "3"}, {16700, "16700"}, {123.456, "123"}, {12.34, "12.3"}, {1.5, "1.5"}, {0.25, "0.25"}, {0.0004, "0"}, {0.0123, "0.012"}, {-0.0001, "0"},
	} {
		if got := fmtNum(tc.in); got != tc.want {
			t.Errorf("fmtNum(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBandsOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	times := []time.Time{at(0), at(5), at(10), at(15), at(20)}
	end := at(25)
	for _, tc := range []struct {
		name   string
		states []string
		want   []chartBand
	}{
		{"none", []string{"", "", "", "", ""}, nil},
		{"one in the middle", []string{"", "open", "", "", ""}, []chartBand{{at(5), at(10), "open"}}},
		{"neighbours merge", []string{"open", "open", "open", "", ""}, []chartBand{{at(0), at(15), "open"}}},
		{"kinds change", []string{"open", "half-open", "", "halted", "halted"},
			[]chartBand{{at(0), at(5), "open"}, {at(5), at(10), "half-open"}, {at(15), end, "halted"}}},
		{"the last lasts until the end", []string{"", "", "", "", "paused"}, []chartBand{{at(20), end, "paused"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bandsOf(times, tc.states, end)
			if len(got) != len(tc.want) {
				t.Fatalf("bands %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].From.Equal(tc.want[i].From) || !got[i].To.Equal(tc.want[i].To) || got[i].Kind != tc.want[i].Kind {
					t.Errorf("band %d: %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

var (
	seriesPath = regexp.MustCompile(`<path class="series" data-series="([^"]+)" data-points="(\d+)" d="([^"]*)"([^/]*)/>`)
)

// TestDrawChart checks the SVG drawn for a few charts: well-formed, one
// path per series with its points (a gap starts a new subpath), the dash
// pattern and a marker per point, labelled in words, bands hatched and
// named, and text escaped.
func TestDrawChart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	times := func(n int) []time.Time {
		out := make([]time.Time, n)
		for i := range out {
			out[i] = t0.Add(time.Duration(i) * 5 * time.Second)
		}
		return out
	}
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		spec chartSpec
		// want: series name -> points and subpaths ("M" count); "" for no path.
		points   map[string]int
		subpaths map[string]int
		dash     map[string]string
		markers  int
		bands    int
		texts    []string
		noData   int
	}{
		{
			name:   "no samples yet",
			spec:   chartSpec{Title: "c", Start: t0, End: t0.Add(time.Hour), Panels: []chartPanel{{Name: "rate", Title: "rate", Series: []chartSeries{{Name: "rate", Label: "rate"}}}}},
			points: map[string]int{}, markers: 1, noData: 1, texts: []string{"rate: no data"},
		},
		{
			name: "one line",
			spec: chartSpec{Title: "c", Start: t0, End: t0.Add(20 * time.Second), Times: times(5),
				Panels: []chartPanel{{Name: "rate", Title: "rate", Series: []chartSeries{{Name: "rate", Label: "delivered/s", Values: []float64{1, 2, 3, 2, 1.5}, Marker: "circle"}}}}},
			points: map[string]int{"rate": 5}, subpaths: map[string]int{"rate": 1}, markers: 5 + 1, texts: []string{"delivered/s: 1.5"},
		},
		{
			name: "a gap splits the line; two series told apart by dash and marker",
			spec: chartSpec{Title: "c", Start: t0, End: t0.Add(20 * time.Second), Times: times(5),
				Panels: []chartPanel{{Name: "latency", Title: "latency", Series: []chartSeries{
					{Name: "p99", Label: "p99", Unit: " ms", Values: []float64{10, nan, 30, 40, nan}, Marker: "circle"},
					{Name: "p50", Label: "p50", Unit: " ms", Values: []float64{5, nan, 6, 7, nan}, Dash: "2 3", Marker: "triangle"},
				}}}},
			points: map[string]int{"p99": 3, "p50": 3}, subpaths: map[string]int{"p99": 2, "p50": 2},
			dash: map[string]string{"p50": "2 3", "p99": ""}, markers: 3 + 3 + 2, texts: []string{"p99: 40 ms", "p50: 7 ms"},
		},
		{
			name: "breaker bands hatched and named; names escaped",
			spec: chartSpec{Title: `a<b>&"c"`, Start: t0, End: t0.Add(20 * time.Second), Times: times(5),
				Panels: []chartPanel{{Name: "rate", Title: "rate", Series: []chartSeries{{Name: "rate", Label: "x<y", Values: []float64{0, 0, 0, 0, 0}}}}},
				Bands:  []chartBand{{t0, t0.Add(10 * time.Second), "open"}, {t0.Add(10 * time.Second), t0.Add(20 * time.Second), "halted"}, {t0, t0.Add(time.Second), "unknown"}}},
			points: map[string]int{"rate": 5}, subpaths: map[string]int{"rate": 1}, markers: 5 + 1, bands: 2,
			texts: []string{"breaker open", "halted", "x&lt;y: 0", "a&lt;b&gt;&amp;&#34;c&#34;"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svg := string(drawChart(tc.spec))
			dec := xml.NewDecoder(strings.NewReader(svg))
			for {
				if _, err := dec.Token(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("not well-formed XML: %v\n%s", err, svg)
				}
			}
			got := map[string]int{}
			for _, m := range seriesPath.FindAllStringSubmatch(svg, -1) {
				n := 0
				for _, c := range m[2] {
					n = n*10 + int(c-'0')
				}
				got[m[1]] = n
				if w := tc.subpaths[m[1]]; strings.Count(m[3], "M") != w {
					t.Errorf("series %s: %d subpaths in %q, want %d", m[1], strings.Count(m[3], "M"), m[3], w)
				}
				if strings.Count(m[3], "M")+strings.Count(m[3], "L") != n {
					t.Errorf("series %s: data-points %d but path %q", m[1], n, m[3])
				}
				if d, ok := tc.dash[m[1]]; ok {
					has := strings.Contains(m[4], `stroke-dasharray="`+d+`"`)
					if d == "" {
						has = !strings.Contains(m[4], "stroke-dasharray")
					}
					if !has {
						t.Errorf("series %s: attributes %q, want dash %q", m[1], m[4], d)
					}
				}
			}
			if len(got) != len(tc.points) {
				t.Errorf("series paths %v, want %v", got, tc.points)
			}
			for k, v := range tc.points {
				if got[k] != v {
					t.Errorf("series %s: %d points, want %d", k, got[k], v)
				}
			}
			if n := strings.Count(svg, `class="marker"`); n != tc.markers {
				t.Errorf("%d markers, want %d (one per point and one per label)", n, tc.markers)
			}
			if n := strings.Count(svg, `class="band"`); n != tc.bands {
				t.Errorf("%d bands, want %d", n, tc.bands)
			}
			if tc.bands > 0 && !strings.Contains(svg, `fill="url(#hatch-open)"`) {
				t.Error("the open band is not hatched")
			}
			if n := strings.Count(svg, `class="no-data"`); n != tc.noData {
				t.Errorf("%d no-data notes, want %d", n, tc.noData)
			}
			for _, s := range tc.texts {
				if !strings.Contains(svg, s) {
					t.Errorf("the chart lacks %q", s)
				}
			}
			if strings.Contains(svg, "<script") || strings.Contains(svg, " style=") {
				t.Error("the chart has a script or a style attribute (the console's CSP refuses inline styles)")
			}
		})
	}
}

// TestConnectorChart draws a connector's chart from samples: four panels,
// the first sample's dead letters left out (no interval), the bands of an
// open breaker.
func TestConnectorChart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	p := func(v float64) *float64 { return &v }
	smps := []Sample{
		{At: t0, Connectors: map[string]ConnectorSample{"c": {DeliveriesPerSecond: 3, Breaker: "closed"}}},
		{At: t0.Add(5 * time.Second), Connectors: map[string]ConnectorSample{"c": {DeliveriesPerSecond: 0, DeadLettersPerSecond: 1, LatencyP99MS: p(250), LatencyP50MS: p(20), Breaker: "open", Lag: 12, measured: true}}},
		{At: t0.Add(10 * time.Second), Connectors: map[string]ConnectorSample{}},
	}
	spec := connectorChart("c", smps, t0.Add(-time.Minute), t0.Add(15*time.Second))
	if len(spec.Panels) != 4 {
		t.Fatalf("%d panels, want 4", len(spec.Panels))
	}
	if len(spec.Bands) != 1 || spec.Bands[0].Kind != "open" || !spec.Bands[0].From.Equal(t0.Add(5*time.Second)) || !spec.Bands[0].To.Equal(t0.Add(10*time.Second)) {
		t.Errorf("bands %v, want open from the second sample to the third", spec.Bands)
	}
	dead := spec.Panels[1].Series[0].Values
	if !math.IsNaN(dead[0]) || dead[1] != 1 || !math.IsNaN(dead[2]) {
		t.Errorf("dead letters %v, want [NaN 1 NaN]", dead)
	}
	svg := string(drawChart(spec))
	for _, want := range []string{`data-metric="deliveries"`, `data-metric="dead_letters"`, `data-metric="latency"`, `data-metric="lag"`, "p99: 250 ms", "breaker open"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the chart lacks %s", want)
		}
	}
}
