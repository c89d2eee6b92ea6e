package admin

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The console's charts are drawn here, as SVG, so that the console needs
// no charting library and no build step. They are readable without
// colour: each series has its own dash pattern and marker and is labelled
// in words at its end, and the breaker bands are hatched, each kind with
// its own hatching, and named in text.

// chartSeries is one line of a panel: Values has one entry per time of
// the chart, NaN where there is no value (a gap in the line).
type chartSeries struct {
	Name   string // data-series attribute, for tests and scripts
	Label  string // shown at the line's end with the latest value
	Unit   string
	Values []float64
	Dash   string // stroke-dasharray, "" for a solid line
	Marker string // circle, square, triangle
}

// chartPanel is one strip of a chart, with its own y scale.
type chartPanel struct {
	Name   string // data-metric attribute
	Title  string
	Series []chartSeries
}

// chartBand shades [From, To) in every panel: a breaker state that is
// not closed, a halt or a pause.
type chartBand struct {
	From, To time.Time
	Kind     string // one of bandKinds
}

// bandKinds are the band kinds in the order the legend shows them; each
// has a hatching pattern and a label.
var bandKinds = []struct{ kind, label, pattern string }{
	{"open", "breaker open", "hatch-open"},
	{"half-open", "breaker half-open", "hatch-half-open"},
	{"halted", "halted", "hatch-halted"},
	{"paused", "paused", "hatch-paused"},
}

// chartSpec is a chart: panels stacked over one time axis.
type chartSpec struct {
	Title      string
	Start, End time.Time
	Times      []time.Time
	Panels     []chartPanel
	Bands      []chartBand
}

// Chart geometry, in SVG user units.
const (
	chartWidth   = 760
	chartLeft    = 56  // room for the y labels
	chartRight   = 150 // room for the series labels
	panelHeight  = 90
	panelGap     = 34 // room for a panel's title
	chartTop     = 28 // room for the chart title
	chartBottom  = 46 // the time axis and the legend
	maxMarkers   = 40
	plotWidth    = chartWidth - chartLeft - chartRight
	markerRadius = 2.6
)

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v <= 0),
// the top of a y axis.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// fmtNum formats a value for a label, without exponents: whole numbers
// from 100 up, and about three significant digits below.
func fmtNum(v float64) string {
	a := math.Abs(v)
	digits := 0
	switch {
	case a >= 100 || v == math.Trunc(v):
	case a >= 10:
		digits = 1
	case a >= 1:
		digits = 2
	default:
		digits = 3
	}
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if digits > 0 {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// drawChart renders c as an SVG document.
func drawChart(c chartSpec) []byte {
	var b bytes.Buffer
	height := chartTop + len(c.Panels)*(panelHeight+panelGap) + chartBottom
	span := c.End.Sub(c.Start).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 {
		return chartLeft + math.Max(0, math.Min(1, t.Sub(c.Start).Seconds()/span))*plotWidth
	}
	esc := html.EscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" font-family="sans-serif" font-size="11">`,
		chartWidth, height, chartWidth, height, esc(c.Title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(c.Title))
	b.WriteString(`<defs>`)
	b.WriteString(`<pattern id="hatch-open" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde0e0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#b00" stroke-width="2"/></pattern>`)
	b.WriteString(`<pattern id="hatch-half-open" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(-45)"><rect width="8" height="8" fill="#fff0d8"/><line x1="0" y1="0" x2="0" y2="8" stroke="#b60" stroke-width="1" stroke-dasharray="2 2"/></pattern>`)
	b.WriteString(`<pattern id="hatch-halted" patternUnits="userSpaceOnUse" width="6" height="6"><rect width="6" height="6" fill="#eee"/><path d="M0 0L6 6M6 0L0 6" stroke="#333" stroke-width="1"/></pattern>`)
	b.WriteString(`<pattern id="hatch-paused" patternUnits="userSpaceOnUse" width="6" height="6"><rect width="6" height="6" fill="#eef"/><line x1="0" y1="3" x2="6" y2="3" stroke="#448" stroke-width="1"/></pattern>`)
	b.WriteString(`</defs>`)
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>`, chartLeft, esc(c.Title))

	patternOf := map[string]string{}
	labelOf := map[string]string{}
	for _, k := range bandKinds {
		patternOf[k.kind], labelOf[k.kind] = k.pattern, k.label
	}
	for pi, p := range c.Panels {
		top := float64(chartTop + pi*(panelHeight+panelGap) + panelGap)
		bottom := top + panelHeight
		ymax := 0.0
		for _, s := range p.Series {
			for _, v := range s.Values {
				if !math.IsNaN(v) {
					ymax = math.Max(ymax, v)
				}
			}
		}
		ymax = niceCeil(ymax)
		y := func(v float64) float64 { return bottom - math.Min(v/ymax, 1)*panelHeight }
		fmt.Fprintf(&b, `<g class="panel" data-metric="%s">`, esc(p.Name))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`, chartLeft, top-8, esc(p.Title))
		for _, band := range c.Bands {
			pat, ok := patternOf[band.Kind]
			if !ok || !band.To.After(band.From) {
				continue
			}
			x0, x1 := x(band.From), x(band.To)
			if x1-x0 < 1 {
				x1 = x0 + 1
			}
			fmt.Fprintf(&b, `<rect class="band" data-kind="%s" x="%.1f" y="%.1f" width="%.1f" height="%d" fill="url(#%s)" stroke="#555" stroke-width="0.5"><title>%s</title></rect>`,
				esc(band.Kind), x0, top, x1-x0, panelHeight, pat, esc(labelOf[band.Kind]))
			// The band's name on a white ground, where it fits; the
			// legend below names every kind shown either way.
			label := labelOf[band.Kind]
			if w := float64(len(label))*5.6 + 6; x1-x0 >= w {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="12" fill="#fff" stroke="none"/>`, x0+1, top+1, w-2)
				fmt.Fprintf(&b, `<text class="band-label" x="%.1f" y="%.1f" font-size="10">%s</text>`, x0+3, top+10, esc(label))
			}
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%d" fill="none" stroke="#999"/>`, chartLeft, top, plotWidth, panelHeight)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd" stroke-dasharray="1 3"/>`, chartLeft, top+panelHeight/2, chartLeft+plotWidth, top+panelHeight/2)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, chartLeft-4, top+4, fmtNum(ymax))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, chartLeft-4, top+panelHeight/2+4, fmtNum(ymax/2))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">0</text>`, chartLeft-4, bottom+4)
		points := 0
		for si, s := range p.Series {
			var d bytes.Buffer
			var marks []([2]float64)
			n, pen := 0, false
			last := math.NaN()
			for i, v := range s.Values {
				if i >= len(c.Times) {
					break
				}
				if math.IsNaN(v) {
					pen = false
					continue
				}
				cmd := "L"
				if !pen {
					cmd = "M"
				}
				px, py := x(c.Times[i]), y(v)
				fmt.Fprintf(&d, "%s%.1f %.1f", cmd, px, py)
				pen = true
				n++
				last = v
				marks = append(marks, [2]float64{px, py})
			}
			points += n
			dash := ""
			if s.Dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, esc(s.Dash))
			}
			if n > 0 {
				fmt.Fprintf(&b, `<path class="series" data-series="%s" data-points="%d" d="%s" fill="none" stroke="#222" stroke-width="1.5"%s/>`,
					esc(s.Name), n, d.String(), dash)
				step := max(1, (len(marks)+maxMarkers-1)/maxMarkers)
				for i, m := range marks {
					if i%step != 0 && i != len(marks)-1 {
						continue
					}
					b.WriteString(marker(s.Marker, m[0], m[1]))
				}
			}
			// The label: a sample of the line (dash and marker), the
			// series' name and its latest value.
			ly := top + 12 + float64(si)*16
			lx := float64(chartLeft + plotWidth + 8)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222" stroke-width="1.5"%s/>`, lx, ly-4, lx+22, ly-4, dash)
			b.WriteString(marker(s.Marker, lx+11, ly-4))
			value := "no data"
			if !math.IsNaN(last) {
				value = fmtNum(last) + s.Unit
			}
			fmt.Fprintf(&b, `<text class="series-label" x="%.1f" y="%.1f">%s: %s</text>`, lx+26, ly, esc(s.Label), esc(value))
		}
		if points == 0 {
			fmt.Fprintf(&b, `<text class="no-data" x="%.1f" y="%.1f" text-anchor="middle" fill="#777">no data yet</text>`, float64(chartLeft+plotWidth/2), top+panelHeight/2-6)
		}
		b.WriteString(`</g>`)
	}
	// The time axis: start, middle and end, in UTC.
	axisY := float64(chartTop + len(c.Panels)*(panelHeight+panelGap) + 14)
	for i, t := range []time.Time{c.Start, c.Start.Add(c.End.Sub(c.Start) / 2), c.End} {
		anchor := []string{"start", "middle", "end"}[i]
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, x(t), axisY, anchor, t.UTC().Format("15:04:05"))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="start" fill="#555">UTC</text>`, chartLeft+plotWidth+8, axisY)
	// The legend of the bands shown.
	lx := float64(chartLeft)
	shown := map[string]bool{}
	for _, band := range c.Bands {
		shown[band.Kind] = true
	}
	for _, k := range bandKinds {
		if !shown[k.kind] {
			continue
		}
		fmt.Fprintf(&b, `<rect class="legend" x="%.1f" y="%.1f" width="14" height="10" fill="url(#%s)" stroke="#555" stroke-width="0.5"/>`, lx, axisY+10, k.pattern)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, lx+18, axisY+19, esc(k.label))
		lx += 130
	}
	b.WriteString(`</svg>`)
	return b.Bytes()
}

// marker draws a point marker: circle, square or triangle.
func marker(kind string, x, y float64) string {
	r := markerRadius
	switch kind {
	case "square":
		return fmt.Sprintf(`<rect class="marker" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#fff" stroke="#222"/>`, x-r, y-r, 2*r, 2*r)
	case "triangle":
		return fmt.Sprintf(`<path class="marker" d="M%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="#fff" stroke="#222"/>`, x, y-r-0.5, x+r+0.5, y+r, x-r-0.5, y+r)
	default:
		return fmt.Sprintf(`<circle class="marker" cx="%.1f" cy="%.1f" r="%.1f" fill="#222"/>`, x, y, r)
	}
}

// bandsOf turns each sample's state (open, half-open, halted, paused or
// "" for none) into bands: a state holds from its sample until the next
// one, the last until end, and equal neighbours merge.
func bandsOf(times []time.Time, states []string, end time.Time) []chartBand {
	var out []chartBand
	for i, st := range states {
		if i >= len(times) {
			break
		}
		to := end
		if i+1 < len(times) {
			to = times[i+1]
		}
		if st == "" {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Kind == st && out[n-1].To.Equal(times[i]) {
			out[n-1].To = to
			continue
		}
		out = append(out, chartBand{From: times[i], To: to, Kind: st})
	}
	return out
}

// bandState is the band kind of a connector sample: a halt first, then
// the breaker, then a pause.
func bandState(c ConnectorSample) string {
	switch {
	case c.Halted:
		return "halted"
	case c.Breaker == "open" || c.Breaker == "half-open":
		return c.Breaker
	case c.Paused:
		return "paused"
	}
	return ""
}

// connectorChart is the chart of connector over the samples, from start
// to end: deliveries/s, dead letters/s, latency (p50 and p99) and lag,
// with the breaker, halt and pause bands.
func connectorChart(connector string, smps []Sample, start, end time.Time) chartSpec {
	title := fmt.Sprintf("%s: the last %d min", connector, int(math.Round(end.Sub(start).Minutes())))
	// A history shorter than the window (the admin started recently)
	// fills the chart rather than a sliver at its right.
	if len(smps) > 0 && smps[0].At.After(start) {
		start = smps[0].At
		if !end.After(start) {
			start = end.Add(-time.Second)
		}
		title = fmt.Sprintf("%s: since %s UTC (the admin's history starts there)", connector, start.UTC().Format("15:04:05"))
	}
	c := chartSpec{Title: title, Start: start, End: end}
	nan := math.NaN()
	var rate, dead, p50, p99, lag []float64
	var states []string
	for _, s := range smps {
		cs, ok := s.Connectors[connector]
		c.Times = append(c.Times, s.At)
		if !ok {
			rate, dead, p50, p99, lag = append(rate, nan), append(dead, nan), append(p50, nan), append(p99, nan), append(lag, nan)
			states = append(states, "")
			continue
		}
		rate = append(rate, cs.DeliveriesPerSecond)
		if cs.measured {
			dead = append(dead, cs.DeadLettersPerSecond)
		} else {
			dead = append(dead, nan)
		}
		p50, p99 = append(p50, orNaN(cs.LatencyP50MS)), append(p99, orNaN(cs.LatencyP99MS))
		lag = append(lag, float64(cs.Lag))
		states = append(states, bandState(cs))
	}
	c.Panels = []chartPanel{
		{Name: "deliveries", Title: "deliveries per second", Series: []chartSeries{{Name: "deliveries", Label: "delivered/s", Values: rate, Marker: "circle"}}},
		{Name: "dead_letters", Title: "dead letters per second", Series: []chartSeries{{Name: "dead_letters", Label: "dead letters/s", Values: dead, Dash: "6 3", Marker: "square"}}},
		{Name: "latency", Title: "end-to-end latency (ms)", Series: []chartSeries{
			{Name: "p99", Label: "p99", Unit: " ms", Values: p99, Marker: "circle"},
			{Name: "p50", Label: "p50", Unit: " ms", Values: p50, Dash: "2 3", Marker: "triangle"},
		}},
		{Name: "lag", Title: "consumer lag (records)", Series: []chartSeries{{Name: "lag", Label: "lag", Values: lag, Dash: "8 2 2 2", Marker: "square"}}},
	}
	c.Bands = bandsOf(c.Times, states, end)
	return c
}

func orNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// getChart answers GET /v1/pipeline/charts/{name}: the connector's chart
// as SVG.
func (s *Server) getChart(w http.ResponseWriter, r *http.Request) {
	name, ok := s.connectorOr404(w, r)
	if !ok {
		return
	}
	now := time.Now()
	from, err := s.windowFromQuery(r, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "minutes: "+err.Error())
		return
	}
	svg := drawChart(connectorChart(name, s.hist.since(from), from, now))
	h := w.Header()
	h.Set("Content-Type", "image/svg+xml")
	h.Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(svg)
}
