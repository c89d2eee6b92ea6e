package main

import (
	"slices"
	"strings"
	"testing"
)

func TestTakeStringFlag(t *testing.T) {
	cases := []struct {
		args  []string
		value string
		rest  []string
		err   bool
	}{
		{args: []string{"--connector", "sf", "--config", "f.yaml"}, value: "sf", rest: []string{"--config", "f.yaml"}},
		{args: []string{"--config=f.yaml", "-connector=logic_apps"}, value: "logic_apps", rest: []string{"--config=f.yaml"}},
		{args: []string{"--config", "f.yaml"}, rest: []string{"--config", "f.yaml"}},
		{args: []string{"--", "--connector", "x"}, rest: []string{"--", "--connector", "x"}},
		{args: []string{"--connectors", "x"}, rest: []string{"--connectors", "x"}},
		{args: []string{"--connector"}, err: true},
	}
	for _, tc := range cases {
		v, rest, err := takeStringFlag(tc.args, "connector")
		if (err != nil) != tc.err || v != tc.value || (!tc.err && !slices.Equal(rest, tc.rest)) {
			t.Errorf("takeStringFlag(%q) = %q, %q, %v; want %q, %q, error %v", tc.args, v, rest, err, tc.value, tc.rest, tc.err)
		}
	}
}

func TestWorkerArguments(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no connector", []string{"worker"}, nil, "--connector is required"},
		{"unknown connector", []string{"worker", "--connector", "nope"}, nil, `connector "nope" is not configured`},
		{"unknown connector from the environment", []string{"worker"}, map[string]string{"FANOUT_CONNECTOR": "nope"}, `connector "nope" is not configured`},
		{"missing value", []string{"worker", "--connector"}, nil, "flag needs an argument"},
		{"unknown simulator", []string{"simulate", "nope"}, nil, "unknown simulator"},
	}
	for _, tc := range cases {
		code, _, errOut := run(t, "", tc.env, tc.args...)
		if code != exitConfig || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errOut, exitConfig, tc.want)
		}
	}
}
