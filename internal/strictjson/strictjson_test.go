package strictjson

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		kind  Kind
		path  string
		depth int
	}{
		{"object", `{"a":[1,{"b":null}],"c":"\ud83d\ude00"}`, 0, "", 64},
		{"scalar", ` 12 `, 0, "", 64},
		{"duplicate top", `{"a":1,"a":2}`, DuplicateKey, "/a", 64},
		{"duplicate nested", `{"a":[{"x":1},{"x":1,"y":2,"x":3}]}`, DuplicateKey, "/a/1/x", 64},
		{"duplicate by escape", `{"ab":1,"a\u0062":2}`, DuplicateKey, "/ab", 64},
		{"same key in sibling objects", `{"a":{"x":1},"b":{"x":1}}`, 0, "", 64},
		{"invalid utf-8", "{\"a\":\"\xff\"}", InvalidUTF8, "", 64},
		{"lone high surrogate", `{"a":"\ud800x"}`, InvalidUTF8, "", 64},
		{"lone low surrogate", `{"a":"\udfff"}`, InvalidUTF8, "", 64},
		{"reversed pair", `{"a":"\ude00\ud83d"}`, InvalidUTF8, "", 64},
		{"escaped backslash then u", `{"a":"\\ud800"}`, 0, "", 64},
		{"depth at limit", `[[[]]]`, 0, "", 3},
		{"depth over limit", `{"a":[[[]]]}`, TooDeep, "/a/0/0", 3},
		{"trailing value", `{} {}`, Syntax, "", 64},
		{"trailing garbage", `{}x`, Syntax, "", 64},
		{"truncated", `{"a":`, Syntax, "", 64},
		{"empty", ``, Syntax, "", 64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.in), tc.depth)
			if tc.kind == 0 {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				return
			}
			if err == nil || err.Kind != tc.kind {
				t.Fatalf("Check = %v, want kind %d", err, tc.kind)
			}
			if tc.path != "" && err.Path != tc.path {
				t.Fatalf("path %q, want %q (%v)", err.Path, tc.path, err)
			}
		})
	}
}

// FuzzCheck: Check never panics, accepts only what encoding/json accepts,
// Decode yields what encoding/json decodes, and what it accepts re-encodes
// to a value it accepts too.
//
//	go test -run '^$' -fuzz '^FuzzCheck$' -fuzztime 30s ./internal/strictjson/
func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"\u00e9"}]}`))
	f.Add([]byte(strings.Repeat("[", 70) + strings.Repeat("]", 70)))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data, 32)
		if err != nil {
			if err.Kind < InvalidUTF8 || err.Kind > TooDeep || err.Msg == "" {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("Check accepted what encoding/json rejects: %q", data)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber() // 1e400 is valid JSON but no float64
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		mine, derr := Decode(data, 32)
		if derr != nil {
			t.Fatalf("Check accepts what Decode refuses: %v", derr)
		}
		if !reflect.DeepEqual(mine, v) {
			t.Fatalf("Decode = %#v, encoding/json = %#v", mine, v)
		}
		again, jerr := json.Marshal(v)
		if jerr != nil {
			t.Fatalf("marshal: %v", jerr)
		}
		if err := Check(again, 32); err != nil {
			t.Fatalf("re-encoded %q fails: %v", again, err)
		}
	})
}
