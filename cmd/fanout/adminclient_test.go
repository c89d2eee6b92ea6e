package main

import (
	"flag"
	"io"
	"slices"
	"testing"

	"github.com/fanout-dev/fanout/internal/admin"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		pos     []string
		o, key  string
		wantErr bool
	}{
		{args: []string{"list", "logic_apps"}, pos: []string{"list", "logic_apps"}, o: "table"},
		{args: []string{"-o", "json", "logic_apps"}, pos: []string{"logic_apps"}, o: "json"},
		{args: []string{"logic_apps", "-o", "json", "--key", "Q1"}, pos: []string{"logic_apps"}, o: "json", key: "Q1"},
		{args: []string{"a", "--key", "Q1", "b"}, pos: []string{"a", "b"}, o: "table", key: "Q1"},
		{args: []string{"a", "--", "-o", "json"}, pos: []string{"a", "-o", "json"}, o: "table"},
		{args: []string{"a", "--nope"}, wantErr: true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o := fs.String("o", "table", "")
		key := fs.String("key", "", "")
		pos, err := parseArgs(fs, tc.args)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.args, err, tc.wantErr)
			continue
		}
		if err == nil && (!slices.Equal(pos, tc.pos) || *o != tc.o || *key != tc.key) {
			t.Errorf("%q: %q -o %q --key %q, want %q -o %q --key %q", tc.args, pos, *o, *key, tc.pos, tc.o, tc.key)
		}
	}
}

func TestParseRecordRef(t *testing.T) {
	for in, want := range map[string]*admin.RecordRef{
		"0/42": {Partition: 0, Offset: 42}, "3:7": {Partition: 3, Offset: 7},
		"x/1": nil, "1/": nil, "-1/2": nil, "1/-2": nil, "12": nil, "99999999999/1": nil,
	} {
		got, err := parseRecordRef(in)
		if want == nil {
			if err == nil {
				t.Errorf("%q: %+v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != *want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, *want)
		}
	}
}
