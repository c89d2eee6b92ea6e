package bench

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"
)

// Series is one latency distribution of a plot.
type Series struct {
	Name    string
	Color   string
	Samples []time.Duration
}

// PlotCDF renders the cumulative distributions of series as an SVG
// document: latency on a logarithmic x axis (so a 5 s poller and a 20 ms
// relay fit on one chart), share of notifications on the y axis. It uses
// no external tool, so `make bench` needs nothing but Go.
func PlotCDF(title, subtitle string, series []Series) string {
	const (
		w, h                   = 760, 420
		left, right, top, foot = 70, 200, 50, 55
	)
	pw, ph := float64(w-left-right), float64(h-top-foot)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, d := range s.Samples {
			v := math.Max(ms(d), 0.1)
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	x := func(v float64) float64 {
		v = math.Min(math.Max(v, lo), hi)
		return float64(left) + pw*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	y := func(q float64) float64 { return float64(top) + ph*(1-q) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="38" fill="#555">%s</text>`+"\n", left, html.EscapeString(subtitle))
	// Grid: decades on x, quarters on y.
	for d := lo; d <= hi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v > hi*1.0001 {
				break
			}
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), h-foot+18, msLabel(v))
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", x(v), top, x(v), h-foot, stroke)
		}
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 0.99, 1} {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(q), w-right, y(q))
		if q == 0.99 {
			continue // its label would overlap 100%'s
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g%%</text>`+"\n", left-6, y(q)+4, q*100)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">latency (log scale)</text>`+"\n", float64(left)+pw/2, h-12)
	fmt.Fprintf(&b, `<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">share at or below</text>`+"\n", float64(top)+ph/2, float64(top)+ph/2)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)

	for i, s := range series {
		ds := slices.Clone(s.Samples)
		slices.Sort(ds)
		ly := top + 10 + i*36
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", w-right+12, ly, w-right+36, ly, s.Color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", w-right+42, ly+4, html.EscapeString(s.Name))
		if len(ds) == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">no samples</text>`+"\n", w-right+42, ly+18)
			continue
		}
		d := Summarize(slices.Clone(ds))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">p50 %s, p99 %s</text>`+"\n", w-right+42, ly+18, msLabel(d.P50), msLabel(d.P99))
		// At most ~400 points per curve keeps the file small.
		step := max(1, len(ds)/400)
		var pts []string
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(math.Max(ms(ds[0]), lo)), y(0)))
		for j := 0; j < len(ds); j += step {
			q := float64(j+1) / float64(len(ds))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(math.Max(ms(ds[j]), 0.1)), y(q)))
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(math.Max(ms(ds[len(ds)-1]), 0.1)), y(1)))
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.Color, strings.Join(pts, " "))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// msLabel renders milliseconds for an axis or legend.
func msLabel(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%gs", math.Round(v/100)/10)
	case v >= 1:
		return fmt.Sprintf("%gms", math.Round(v*10)/10)
	default:
		return fmt.Sprintf("%gms", math.Round(v*100)/100)
	}
}
