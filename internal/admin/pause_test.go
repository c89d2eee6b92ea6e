package admin_test

import (
	"context"
	"testing"
	"time"
)

// TestPauseSurvivesRestart pauses logic_apps through the admin API: the
// running worker stops delivering within about 2 s (the bystander goes
// on), a restarted worker stays paused from its first fetch, and a resume
// delivers what waited. Pause and resume are audited.
func TestPauseSurvivesRestart(t *testing.T) {
	s := newStack(t)
	la, bystander := s.rec["logic_apps"], s.rec["audit"]
	w := s.start(t, "logic_apps")
	s.start(t, "audit")
	s.produce(t, note{key: "P1", version: 1})
	waitFor(t, 20*time.Second, "P1 delivered", func() bool { return la.delivered()["P1-v1"] == 1 })

	if c := s.do(t, "POST", "/v1/connectors/logic_apps/pause", opsToken, map[string]any{"reason": "downstream maintenance"}, nil); c != 200 {
		t.Fatalf("pause: %d", c)
	}
	waitFor(t, 2500*time.Millisecond, "the worker to see the pause", func() bool { return w.Stats().Paused.Load() && w.Stats().FetchPaused.Load() })
	s.produce(t, note{key: "P2", version: 1})
	waitFor(t, 20*time.Second, "the bystander delivers P2", func() bool { return bystander.delivered()["P2-v1"] == 1 })
	time.Sleep(time.Second)
	if la.delivered()["P2-v1"] != 0 {
		t.Fatal("a paused connector delivered")
	}

	// Restart: the new worker reads the pause before fetching.
	w = s.start(t, "logic_apps")
	waitFor(t, 5*time.Second, "the new worker's status", func() bool {
		sts, err := s.st.WorkerStatuses(context.Background(), "logic_apps", time.Now().Add(-10*time.Second))
		if err != nil {
			return false
		}
		for _, st := range sts {
			if st.Instance == w.Instance() && st.Paused && len(st.Partitions) > 0 {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second)
	if la.delivered()["P2-v1"] != 0 || w.Stats().Delivered.Load() != 0 {
		t.Fatal("a restarted worker of a paused connector delivered")
	}
	var view struct {
		Paused bool `json:"paused"`
		Pause  struct {
			By, Reason string
		} `json:"pause"`
	}
	s.do(t, "GET", "/v1/connectors/logic_apps", viewerToken, nil, &view)
	if !view.Paused || view.Pause.By != "ops" || view.Pause.Reason != "downstream maintenance" {
		t.Errorf("connector view: %+v", view)
	}

	if c := s.do(t, "POST", "/v1/connectors/logic_apps/resume", opsToken, nil, nil); c != 200 {
		t.Fatalf("resume: %d", c)
	}
	waitFor(t, 5*time.Second, "P2 delivered after the resume", func() bool { return la.delivered()["P2-v1"] == 1 })

	var audit struct {
		Records []struct{ Who, Action string } `json:"records"`
	}
	s.do(t, "GET", "/v1/audit", viewerToken, nil, &audit)
	if len(audit.Records) != 2 || audit.Records[0].Action != "resume" || audit.Records[1].Action != "pause" || audit.Records[0].Who != "ops" {
		t.Errorf("audit: %+v", audit.Records)
	}
}
