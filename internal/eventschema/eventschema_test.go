package eventschema

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompileAndValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	money := write("money.json", `{"type":"integer","minimum":0}`)
	_ = money
	good := write("good.json", `{"type":"object","properties":{"amount":{"$ref":"money.json"}}}`)
	remote := write("remote.json", `{"$ref":"https://example.com/schema.json"}`)
	broken := write("broken.json", `{"type":"objekt"}`)
	set, errs := Compile(map[string]string{"ok": good, "remote": remote, "broken": broken, "missing": filepath.Join(dir, "nope.json")})
	got := map[string]bool{}
	for _, e := range errs {
		got[e.EventType] = true
	}
	if len(errs) != 3 || !got["remote"] || !got["broken"] || !got["missing"] {
		t.Fatalf("compile errors %v", errs)
	}
	if !set.Has("ok") || set.Has("broken") {
		t.Fatal("Has is wrong")
	}
	var ev any
	dec := json.NewDecoder(strings.NewReader(`{"amount":-1}`))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	v := set.Validate("ok", ev)
	if v == nil || v.InstancePath != "/amount" || v.Keyword != "minimum" || !strings.HasSuffix(v.SchemaPath, "/minimum") {
		t.Fatalf("violation %+v", v)
	}
	if set.Validate("other", ev) != nil {
		t.Fatal("a type without a schema failed")
	}
}
