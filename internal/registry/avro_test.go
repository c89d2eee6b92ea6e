package registry

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/fanout-dev/fanout/internal/envelope"
)

const allTypes = `{"type":"record","name":"All","namespace":"t","fields":[
 {"name":"b","type":"boolean"},
 {"name":"i","type":"int"},
 {"name":"l","type":"long"},
 {"name":"f","type":"float"},
 {"name":"d","type":"double"},
 {"name":"by","type":"bytes"},
 {"name":"s","type":"string"},
 {"name":"n","type":"null"},
 {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
 {"name":"fx","type":{"type":"fixed","name":"F","size":2}},
 {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
 {"name":"date","type":{"type":"int","logicalType":"date"}},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
 {"name":"opt","type":["null","string"]},
 {"name":"multi","type":["null","long","string","E"]},
 {"name":"arr","type":{"type":"array","items":"int"}},
 {"name":"m","type":{"type":"map","values":{"type":"array","items":"string"}}},
 {"name":"next","type":["null","All"]}
]}`

// TestAvroTypes: every Avro type, as hamba/avro encodes it, comes out as
// the JSON documented in docs/architecture.md.
func TestAvroTypes(t *testing.T) {
	s := avro.MustParse(allTypes)
	v := map[string]any{
		"b": true, "i": -7, "l": int64(1) << 40, "f": float32(1.5), "d": 2.25, "by": []byte{0, 1, 2},
		"s": "ü/%", "n": nil, "e": "B", "fx": [2]byte{0xff, 0}, "dec": big.NewRat(-12345, 100),
		"date": time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), "ts": time.Date(2026, 11, 30, 9, 1, 2, 3000, time.UTC),
		"uuid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "opt": "x", "multi": map[string]any{"t.E": "A"},
		"arr": []int{1, 2, 3}, "m": map[string][]string{"k": {"a"}},
		"next": map[string]any{"t.All": map[string]any{
			"b": false, "i": 0, "l": int64(0), "f": float32(0), "d": 0.0, "by": []byte{}, "s": "", "n": nil, "e": "A",
			"fx": [2]byte{}, "dec": big.NewRat(0, 1), "date": time.Unix(0, 0).UTC(), "ts": time.Unix(0, 0).UTC(),
			"uuid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "opt": nil, "multi": map[string]any{"long": int64(5)},
			"arr": []int{}, "m": map[string][]string{}, "next": nil,
		}},
	}
	body, err := avro.Marshal(s, v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeAvro(s, body)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"arr":[1,2,3],"b":true,"by":"AAEC","d":2.25,"date":"2026-11-30","dec":-123.45,"e":"B","f":1.5,"fx":"/wA=","i":-7,"l":1099511627776,"m":{"k":["a"]},"multi":{"E":"A"},"n":null,` +
		`"next":{"arr":[],"b":false,"by":"","d":0,"date":"1970-01-01","dec":0.00,"e":"A","f":0,"fx":"AAA=","i":0,"l":0,"m":{},"multi":{"long":5},"n":null,"next":null,"opt":null,"s":"","ts":"1970-01-01T00:00:00Z","uuid":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"},` +
		`"opt":"x","s":"ü/%","ts":"2026-11-30T09:01:02.000003Z","uuid":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`
	if string(j) != want {
		t.Fatalf("decoded\n%s\nwant\n%s", j, want)
	}
}

// TestAvroBounds: lengths and counts are checked against the bytes left
// before anything is allocated or looped over. hamba/avro's generic
// reader took 0.8 s for a 10-byte value announcing 2^20 items, and was
// killed after 9 minutes on 2^30.
func TestAvroBounds(t *testing.T) {
	arr := avro.MustParse(`{"type":"array","items":"long"}`)
	nulls := avro.MustParse(`{"type":"array","items":"null"}`)
	str := avro.MustParse(`"string"`)
	mp := avro.MustParse(`{"type":"map","values":"int"}`)
	cases := []struct {
		name   string
		s      avro.Schema
		body   []byte
		reason string
	}{
		{"huge count", arr, binary.AppendVarint(nil, 1<<40), ""},
		{"huge negative count", arr, binary.AppendVarint(binary.AppendVarint(nil, -(1<<40)), 8), ""},
		{"huge zero-size count", nulls, binary.AppendVarint(nil, 1<<40), ""},
		{"zero-size counts adding up", nulls, append(binary.AppendVarint(binary.AppendVarint(nil, 60000), 60000), 0), ""},
		{"huge string", str, binary.AppendVarint(nil, 1<<50), ""},
		{"negative length", str, binary.AppendVarint(nil, -1), ""},
		{"long too long", arr, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ""},
		{"bad utf-8", str, append(binary.AppendVarint(nil, 1), 0xff), envelope.ReasonInvalidUTF8},
		{"duplicate map key", mp, []byte{4, 2, 'a', 2, 2, 'a', 4, 0}, envelope.ReasonDuplicateKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAvro(tc.s, tc.body)
			if err == nil {
				t.Fatal("decoded")
			}
			var re *Error
			if tc.reason != "" && (!errors.As(err, &re) || re.Reason != tc.reason) {
				t.Fatalf("error %v, want reason %s", err, tc.reason)
			}
		})
	}
	// 1000 nulls are fine.
	if v, err := decodeAvro(nulls, append(binary.AppendVarint(nil, 1000), 0)); err != nil || len(v.([]any)) != 1000 {
		t.Fatalf("1000 nulls: %v", err)
	}
}
