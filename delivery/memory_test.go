package delivery

import (
	"testing"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fanout-dev/fanout/internal/config"
)

// TestWorkerFetchCaps: the worker's fetches stay within kafka.fetch_max_bytes
// and kafka.fetch_max_partition_bytes; a fetch is decompressed whole and
// what its records point into stays alive, so a worker that sized its
// fetches from its buffer bound alone (16 MiB with the then default 64 MiB)
// peaked at 380-460 MiB in B6 with a 200k backlog.
func TestWorkerFetchCaps(t *testing.T) {
	cases := []struct {
		name                string
		fetch, part         int32
		buffered            int64
		wantFetch, wantPart int32
	}{
		{"defaults", config.DefaultFetchMaxBytes, config.DefaultFetchMaxPartitionBytes, config.Default().Delivery.MaxBufferedBytes, 512 << 10, 256 << 10},
		{"small buffer bounds the fetch", 4 << 20, 2 << 20, 4 << 20, 256 << 10, 256 << 10},
		{"large caps kept below the buffer", 64 << 20, 32 << 20, 64 << 20, 4 << 20, 4 << 20},
		{"floor of 64 KiB", 1 << 20, 1 << 20, 16 << 10, 64 << 10, 64 << 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{FetchMaxBytes: c.fetch, FetchMaxPartitionBytes: c.part, Policy: config.Default().Delivery}
			cfg.Policy.MaxBufferedBytes = c.buffered
			w := &Worker{cfg: cfg, d: cfg.Policy}
			cl, err := kgo.NewClient(w.fetchOpts()...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.OptValue(kgo.FetchMaxBytes).(int32); got != c.wantFetch {
				t.Errorf("FetchMaxBytes %d, want %d", got, c.wantFetch)
			}
			if got := cl.OptValue(kgo.FetchMaxPartitionBytes).(int32); got != c.wantPart {
				t.Errorf("FetchMaxPartitionBytes %d, want %d", got, c.wantPart)
			}
		})
	}
}

// TestDetachCopiesOutOfTheBatch: a buffered record keeps only its own
// bytes alive, not the decompressed batch (and the slab of records) it was
// fetched in.
func TestDetachCopiesOutOfTheBatch(t *testing.T) {
	batch := make([]byte, 1<<20)
	copy(batch[100:], "key1value1hv")
	slab := make([]kgo.Record, 3)
	in := &slab[1]
	*in = kgo.Record{Topic: "t", Partition: 2, Offset: 7, LeaderEpoch: 3, Key: batch[100:104], Value: batch[104:110],
		Headers: []kgo.RecordHeader{{Key: "h", Value: batch[110:112]}, {Key: "empty"}}}
	out := detach(in)
	if out == in {
		t.Fatal("detach returned the fetched record itself")
	}
	if string(out.Key) != "key1" || string(out.Value) != "value1" || len(out.Headers) != 2 ||
		out.Headers[0].Key != "h" || string(out.Headers[0].Value) != "hv" || out.Headers[1].Key != "empty" || out.Headers[1].Value != nil {
		t.Fatalf("detached record differs: %+v", out)
	}
	if out.Topic != "t" || out.Partition != 2 || out.Offset != 7 || out.LeaderEpoch != 3 {
		t.Fatalf("detached record lost its position: %+v", out)
	}
	lo, hi := uintptr(unsafe.Pointer(&batch[0])), uintptr(unsafe.Pointer(&batch[len(batch)-1]))
	for name, b := range map[string][]byte{"key": out.Key, "value": out.Value, "header": out.Headers[0].Value} {
		if p := uintptr(unsafe.Pointer(&b[0])); p >= lo && p <= hi {
			t.Errorf("%s still points into the fetched batch", name)
		}
		if cap(b) > 64 {
			t.Errorf("%s has capacity %d: it keeps more than its own bytes", name, cap(b))
		}
	}
	// Appending to one slice must not overwrite the next.
	_ = append(out.Key, 'X')
	if string(out.Value) != "value1" {
		t.Errorf("appending to the key overwrote the value: %q", out.Value)
	}
}

// TestRecordSizeCountsOverhead: the buffer's byte bound counts what a
// buffered record costs beyond its bytes, so that many small records are
// bounded too.
func TestRecordSizeCountsOverhead(t *testing.T) {
	r := &kgo.Record{Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("b")}}}
	// At least the record's bytes (4) and its kgo.Record.
	if got, least := recordSize(r), 4+int64(unsafe.Sizeof(kgo.Record{})); got < least {
		t.Errorf("recordSize %d, want at least %d", got, least)
	}
}
