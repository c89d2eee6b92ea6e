package bench

import (
	"fmt"
)

// SmokeCheck is one figure of `make bench-smoke`: a ratio of a fanout
// figure to its baseline measured in the same run (higher is better), and
// the ratio the reference run measured. The check fails when the ratio
// falls below half the reference: a regression of more than 2x. Only
// ratios are compared, never absolute times, so a slower or busier machine
// moves figure and baseline together.
type SmokeCheck struct {
	Name      string  `json:"name"`
	Figure    float64 `json:"figure"`
	Baseline  float64 `json:"baseline"`
	Ratio     float64 `json:"ratio"`
	Reference float64 `json:"reference_ratio"`
	OK        bool    `json:"ok"`
}

// Smoke reference ratios: the lowest of four `make bench-smoke` runs on the
// 2-core machine of docs/benchmarks.md on 2026-12-01, at load averages of
// 11-19, each in 60-77 s (B1 events/s ratio 2.39 / 10.45 / 6.91 / 3.55,
// commands ratio 14.85 / 16.48 / 18.27 / 15.70; B7 9.04 / 10.60 over 50
// aggregates). Update them with a note in the commit when a change moves a
// figure on purpose.
const (
	// fanout's projector + relay events/s over the seed design's, store
	// direct (small counts: the seed's 5 s poller weighs more than in B1).
	refB1Speedup = 2.4
	// The seed's store commands per event over fanout's.
	refB1Commands = 14.8
	// The projector's read commands per event without the version cache
	// over those with it (point reads, 1,000 READ documents, 1,000 events
	// over 50 aggregates at 200 events/s).
	refB7Cache = 9.0
)

// smokeCounts are the counts of a smoke run: small enough for about two
// minutes in all.
const (
	smokeB1Events     = 1000
	smokeB1SeedEvents = 200
	smokeB7Events     = 1000
	smokeB7Aggregates = 50
)

func newSmokeCheck(name string, figure, baseline, ref float64) SmokeCheck {
	c := SmokeCheck{Name: name, Figure: figure, Baseline: baseline, Reference: ref}
	if baseline > 0 {
		c.Ratio = figure / baseline
	}
	c.OK = c.Ratio >= ref/2
	return c
}

// smokeChecks derives the checks from a smoke run's results; a missing
// result is a failed check.
func smokeChecks(rep *Report) []SmokeCheck {
	var out []SmokeCheck
	var f, s *PipelineRun
	if rep.B1 != nil {
		f, s = findRun(rep.B1.Runs, DesignFanout, LinkDirect), findRun(rep.B1.Runs, DesignSeed, LinkDirect)
	}
	if f != nil && s != nil {
		out = append(out,
			newSmokeCheck("B1 events/s, fanout over the seed", f.EventsPerSec, s.EventsPerSec, refB1Speedup),
			// Fewer commands is better: the seed's count is the figure.
			newSmokeCheck("B1 store commands per event, the seed over fanout", s.StoreCmdsPerEvent, f.StoreCmdsPerEvent, refB1Commands))
	} else {
		out = append(out, SmokeCheck{Name: "B1 did not produce its direct-link runs"})
	}
	var off, on *StoreCostRun
	if rep.B7 != nil {
		off, on = findB7(rep.B7.Runs, 1000, "point", false), findB7(rep.B7.Runs, 1000, "point", true)
	}
	if off != nil && on != nil {
		out = append(out, newSmokeCheck("B7 projector read commands per event, no cache over the version cache",
			off.ProjectorReadsPerEvent(), on.ProjectorReadsPerEvent(), refB7Cache))
	} else {
		out = append(out, SmokeCheck{Name: "B7 did not produce its 1,000-document point-read runs"})
	}
	return out
}

// smokeFailures lists the failed checks as report failures.
func smokeFailures(cs []SmokeCheck) []string {
	var out []string
	for _, c := range cs {
		if !c.OK {
			out = append(out, fmt.Sprintf("smoke: %s: ratio %.2f, below half the reference %.2f (figure %.3f, baseline %.3f)",
				c.Name, c.Ratio, c.Reference, c.Figure, c.Baseline))
		}
	}
	return out
}
