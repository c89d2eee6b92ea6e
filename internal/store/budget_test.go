package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestBudgets checks that retry budgets are stored per connector and
// notification id, overwritten by a later note, and deleted when done.
func TestBudgets(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URI: testenv.Mongo(t), Database: testenv.Database(t), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Drop(context.Background()); _ = st.Close(context.Background()) })
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	steps := []struct {
		name      string
		connector string
		set       map[string]store.Budget
		done      []string
		want      map[string]store.Budget // of "la", ids e1..e3
	}{
		{"create", "la", map[string]store.Budget{"e1": {Attempts: 2, Counted: 2, FirstFail: t0}, "e2": {Attempts: 1, Counted: 0, FirstFail: t0}}, nil,
			map[string]store.Budget{"e1": {Attempts: 2, Counted: 2, FirstFail: t0}, "e2": {Attempts: 1, Counted: 0, FirstFail: t0}}},
		{"update", "la", map[string]store.Budget{"e1": {Attempts: 3, Counted: 3, FirstFail: t0}}, nil,
			map[string]store.Budget{"e1": {Attempts: 3, Counted: 3, FirstFail: t0}, "e2": {Attempts: 1, Counted: 0, FirstFail: t0}}},
		{"other connector apart", "sf", map[string]store.Budget{"e1": {Attempts: 9, Counted: 9, FirstFail: t0}}, nil,
			map[string]store.Budget{"e1": {Attempts: 3, Counted: 3, FirstFail: t0}, "e2": {Attempts: 1, Counted: 0, FirstFail: t0}}},
		{"done deletes", "la", map[string]store.Budget{"e3": {Attempts: 1, Counted: 1, FirstFail: t0}}, []string{"e1"},
			map[string]store.Budget{"e2": {Attempts: 1, Counted: 0, FirstFail: t0}, "e3": {Attempts: 1, Counted: 1, FirstFail: t0}}},
	}
	for _, s := range steps {
		if err := st.RecordBudgets(ctx, s.connector, s.set, s.done); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, err := st.Budgets(ctx, "la", []string{"e1", "e2", "e3"})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(got) != len(s.want) {
			t.Errorf("%s: budgets %v, want %v", s.name, got, s.want)
			continue
		}
		for id, w := range s.want {
			g := got[id]
			if g.Attempts != w.Attempts || g.Counted != w.Counted || !g.FirstFail.Equal(w.FirstFail) {
				t.Errorf("%s: budget of %s = %+v, want %+v", s.name, id, g, w)
			}
		}
	}
}
