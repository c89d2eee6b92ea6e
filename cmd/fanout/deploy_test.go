package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeployRender(t *testing.T) {
	example := filepath.Join("..", "..", "fanout.example.yaml")
	code, out, errOut := run(t, "", nil, "deploy", "render", "--config", example)
	if code != 0 || !strings.Contains(out, "name: worker-logic-apps") || !strings.Contains(out, "kind: PodDisruptionBudget") || strings.Contains(out, "ScaledObject") {
		t.Fatalf("render: exit %d, stderr %s, stdout:\n%s", code, errOut, out)
	}
	code, out, _ = run(t, "", map[string]string{"FANOUT_CONFIG": example}, "deploy", "render", "--keda")
	if code != 0 || !strings.Contains(out, "kind: ScaledObject") || !strings.Contains(out, "consumerGroup: fanout-salesforce") {
		t.Fatalf("render --keda: exit %d, stdout:\n%s", code, out)
	}

	// The repository's manifests are what the command writes.
	code, out, errOut = run(t, "", nil, "deploy", "render", "--config", filepath.Join("..", "..", "deploy", "k8s", "base", "fanout.yaml"),
		"--out", filepath.Join("..", "..", "deploy", "k8s"), "--keda", "--hpa", "--check")
	if code != 0 || !strings.Contains(out, "5 file(s) up to date") {
		t.Fatalf("--check on deploy/k8s: exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	dir := t.TempDir()
	if code, _, errOut := run(t, "", nil, "deploy", "render", "--config", example, "--out", dir); code != 0 {
		t.Fatalf("--out: exit %d, %s", code, errOut)
	}
	for _, p := range []string{"base/workers.yaml", "base/secret.example.yaml", "monitoring/prometheusrule.yaml"} {
		got, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("..", "..", "deploy", "k8s", p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("--out wrote a %s that differs from deploy/k8s/%s", p, p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "overlays")); !os.IsNotExist(err) {
		t.Errorf("without --keda or --hpa, overlays were written (%v)", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base", "workers.yaml"), []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "", nil, "deploy", "render", "--config", example, "--out", dir, "--check")
	if code != 1 || !strings.Contains(errOut, "workers.yaml") {
		t.Errorf("--check on a stale file: exit %d, stderr %s", code, errOut)
	}

	for _, args := range [][]string{
		{"deploy"},
		{"deploy", "nope"},
		{"deploy", "render"},
		{"deploy", "render", "--config", example, "--check"},
		{"deploy", "render", "--config", example, "--image", "ghcr.io/fanout-dev/fanout:latest"},
		{"deploy", "render", "--config", example, "extra"},
	} {
		if code, _, _ := run(t, "", nil, args...); code != exitConfig {
			t.Errorf("%v: exit %d, want %d", args, code, exitConfig)
		}
	}
}

func TestDeployProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	if code, out, errOut := run(t, "", nil, "deploy", "probe", srv.URL+"/readyz"); code != 0 || !strings.Contains(out, "200") {
		t.Errorf("ready: exit %d, %s %s", code, out, errOut)
	}
	status = http.StatusServiceUnavailable
	if code, _, errOut := run(t, "", nil, "deploy", "probe", srv.URL+"/readyz"); code != 1 || !strings.Contains(errOut, "503") {
		t.Errorf("not ready: exit %d, %s", code, errOut)
	}
	if code, _, _ := run(t, "", nil, "deploy", "probe", "not a url"); code != exitConfig {
		t.Errorf("bad URL: exit %d", code)
	}
}
