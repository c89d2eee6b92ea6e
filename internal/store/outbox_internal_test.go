package store

import (
	"testing"
	"time"
)

// TestOldestAgeWhenTheOldestVanished: the relay may delete the oldest
// entry between the count and the lookup; the age must then not read as
// the time since year 1 (about 9.2e9 s, the alert the docs recommend).
func TestOldestAgeWhenTheOldestVanished(t *testing.T) {
	now := time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		created time.Time
		found   bool
		want    time.Duration
	}{
		{"found", now.Add(-90 * time.Second), true, 90 * time.Second},
		{"deleted between count and lookup", time.Time{}, false, 0},
		{"created on a host whose clock is ahead", now.Add(time.Minute), true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := oldestAge(now, tc.created, tc.found); got != tc.want {
				t.Fatalf("oldestAge = %v (%.3g s), want %v", got, got.Seconds(), tc.want)
			}
		})
	}
}
