package store

import (
	"maps"
	"testing"
)

// TestPackVersions: what packVersions writes, unpackVersions reads back,
// keeping the higher version of a key seen twice.
func TestPackVersions(t *testing.T) {
	cases := []map[string]int64{
		{},
		{"a": 1},
		{"": 7, "k/é.$": 1 << 50, "neg": -3, "max": 1<<63 - 1},
	}
	for _, in := range cases {
		got := map[string]int64{}
		if err := unpackVersions(packVersions(in), got); err != nil {
			t.Fatalf("%v: %v", in, err)
		}
		if !maps.Equal(got, in) {
			t.Errorf("round trip of %v = %v", in, got)
		}
	}
	into := map[string]int64{"a": 5, "b": 9}
	if err := unpackVersions(packVersions(map[string]int64{"a": 7, "b": 2}), into); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"a": 7, "b": 9}; !maps.Equal(into, want) {
		t.Errorf("merge = %v, want %v", into, want)
	}
}

// FuzzUnpackVersions: a corrupt segment is an error, never a panic or an
// allocation sized by its bytes.
func FuzzUnpackVersions(f *testing.F) {
	f.Add(packVersions(map[string]int64{"a": 1, "bb": 2}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x05, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := map[string]int64{}
		if err := unpackVersions(b, m); err == nil {
			back := map[string]int64{}
			if err := unpackVersions(packVersions(m), back); err != nil || !maps.Equal(back, m) {
				t.Fatalf("re-pack of %v: %v, %v", m, back, err)
			}
		}
	})
}
