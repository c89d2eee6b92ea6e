package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fanout-dev/fanout/internal/store"
	"github.com/fanout-dev/fanout/internal/testenv"
)

// TestRecordDelivered checks the version guard of the delivered versions
// on both write paths: one bulkWrite (with its fallback where the server
// stops at the first error) and parallel single upserts.
func TestRecordDelivered(t *testing.T) {
	uri := testenv.Mongo(t)
	for _, mode := range []string{"bulk", "parallel"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.Open(ctx, store.Options{URI: uri, Database: testenv.Database(t), Timeout: 20 * time.Second, DomainWrites: mode})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = st.Drop(context.Background())
				_ = st.Close(context.Background())
			})
			steps := []struct {
				name      string
				connector string
				versions  map[string]int64
				want      map[string]int64 // for connector "la"
			}{
				{"create", "la", map[string]int64{"a": 1, "b": 3}, map[string]int64{"a": 1, "b": 3}},
				{"newer applies", "la", map[string]int64{"a": 2}, map[string]int64{"a": 2, "b": 3}},
				{"stale ignored", "la", map[string]int64{"a": 1, "b": 2}, map[string]int64{"a": 2, "b": 3}},
				{"mixed batch", "la", map[string]int64{"a": 1, "b": 5, "c": 7}, map[string]int64{"a": 2, "b": 5, "c": 7}},
				{"other connector apart", "sf", map[string]int64{"a": 100, "d": 1}, map[string]int64{"a": 2, "b": 5, "c": 7}},
				{"empty", "la", nil, map[string]int64{"a": 2, "b": 5, "c": 7}},
			}
			for _, s := range steps {
				if err := st.RecordDelivered(ctx, s.connector, s.versions); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				got, err := st.DeliveredVersions(ctx, "la", []string{"a", "b", "c", "d", "missing"})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(s.want) {
					t.Errorf("%s: got %v, want %v", s.name, got, s.want)
				}
				for k, v := range s.want {
					if got[k] != v {
						t.Errorf("%s: version of %s = %d, want %d", s.name, k, got[k], v)
					}
				}
			}
			sf, err := st.DeliveredVersions(ctx, "sf", []string{"a", "d"})
			if err != nil {
				t.Fatal(err)
			}
			if sf["a"] != 100 || sf["d"] != 1 {
				t.Errorf("sf versions = %v, want a:100 d:1", sf)
			}
			// A larger flush, half of it stale, as a worker sends it.
			big := make(map[string]int64)
			for i := range 120 {
				big[fmt.Sprintf("k%03d", i)] = int64(10 + i%2)
			}
			if err := st.RecordDelivered(ctx, "la", big); err != nil {
				t.Fatal(err)
			}
			for k := range big {
				big[k] = 10
			}
			if err := st.RecordDelivered(ctx, "la", big); err != nil {
				t.Fatal(err)
			}
			keys := make([]string, 0, len(big))
			for k := range big {
				keys = append(keys, k)
			}
			got, err := st.DeliveredVersions(ctx, "la", keys)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 120 {
				k := fmt.Sprintf("k%03d", i)
				if want := int64(10 + i%2); got[k] != want {
					t.Fatalf("version of %s = %d, want %d", k, got[k], want)
				}
			}
		})
	}
}
