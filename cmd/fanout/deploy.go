package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fanout-dev/fanout/internal/config"
	"github.com/fanout-dev/fanout/internal/render"
)

const helpDeploy = `usage: fanout deploy render --config FILE [--out DIR] [--keda] [--hpa] [--check]
       fanout deploy probe [URL]

Renders the Kubernetes manifests that follow from the configuration, so
they cannot drift from it: for each connector a worker-<connector>
Deployment running 'fanout worker --connector NAME', with a secretKeyRef
for every *_env field of its settings (key = the variable's name, in the
Secret fanout-secrets), and a PodDisruptionBudget; with --keda a KEDA
ScaledObject per worker on its consumer group's lag; with --hpa a
HorizontalPodAutoscaler per worker. Only the file is read, not the
environment: keep topics and groups in the file.

Without --out it prints the documents. With --out DIR (a tree laid out like
deploy/k8s) it writes
  DIR/base/workers.yaml             Deployments and PDBs
  DIR/base/secret.example.yaml      the Secret's keys, as an example
  DIR/monitoring/prometheusrule.yaml     the alerting rules of
                                         deploy/prometheus/fanout-alerts.yaml
                                         as a PrometheusRule (Prometheus Operator)
  DIR/overlays/keda/scaledobjects.yaml   with --keda
  DIR/overlays/hpa/hpa.yaml              with --hpa
and with --check compares instead of writing (exit 1 when out of date).

This repository's manifests:
  fanout deploy render --config deploy/k8s/base/fanout.yaml --out deploy/k8s --keda --hpa

'probe' GETs URL (default http://127.0.0.1:9464/readyz) and exits 0 on a
2xx answer, 1 otherwise: a container healthcheck for images without a
shell or curl, such as fanout's distroless image (deploy/compose uses it).
`

// probeTimeout bounds one `fanout deploy probe`.
const probeTimeout = 3 * time.Second

// runDeploy runs `fanout deploy render` and `fanout deploy probe`.
func runDeploy(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help") {
		fmt.Fprint(e.stdout, helpDeploy)
		return nil
	}
	if len(args) > 0 && args[0] == "probe" {
		return runProbe(ctx, e, args[1:])
	}
	if len(args) == 0 || args[0] != "render" {
		return usageError{"usage: fanout deploy render|probe ... (see fanout deploy --help)"}
	}
	fs := newFlagSet("deploy render", e, helpDeploy)
	var (
		cf    commonFlags
		out   string
		check bool
		opts  render.Options
	)
	cf.register(fs, e)
	fs.StringVar(&out, "out", "", "write the files into this kustomize tree (like deploy/k8s) instead of printing")
	fs.BoolVar(&check, "check", false, "with --out: compare the files instead of writing them; exit 1 when they differ")
	fs.BoolVar(&opts.KEDA, "keda", false, "also render a KEDA ScaledObject per worker")
	fs.BoolVar(&opts.HPA, "hpa", false, "also render a HorizontalPodAutoscaler per worker")
	fs.StringVar(&opts.Image, "image", render.DefaultImage, "container image: a tag or digest, never latest")
	fs.IntVar(&opts.Replicas, "replicas", 1, "replicas per worker without an autoscaler")
	fs.IntVar(&opts.MinReplicas, "min-replicas", 1, "autoscaling: fewest replicas per worker")
	fs.IntVar(&opts.MaxReplicas, "max-replicas", 12, "autoscaling: most replicas per worker (at most the notifications topic's partitions)")
	fs.IntVar(&opts.LagThreshold, "lag-threshold", 100, "autoscaling on lag: target lag per replica")
	fs.IntVar(&opts.CPUUtilization, "cpu-utilization", 70, "--hpa on CPU: target utilization in percent of requests")
	fs.StringVar(&opts.HPALagMetric, "hpa-lag-metric", "", "--hpa: scale on this external lag metric (e.g. kafka_consumergroup_lag) instead of CPU")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if cf.config == "" {
		return usageError{"--config is required: the manifests follow from the configuration's connectors"}
	}
	if check && out == "" {
		return usageError{"--check needs --out DIR: the tree to compare with"}
	}
	// The file alone: the environment of whoever renders is not the pods'.
	cfg, err := config.Load(cf.config, nil)
	if err != nil {
		return configError{err}
	}
	if out == "" {
		b, err := render.Workers(cfg, opts)
		if err != nil {
			return configError{err}
		}
		_, err = e.stdout.Write(b)
		return err
	}
	files, err := render.Files(cfg, opts)
	if err != nil {
		return configError{err}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var stale []string
	for _, p := range paths {
		full := filepath.Join(out, filepath.FromSlash(p))
		if check {
			have, err := os.ReadFile(full)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("reading %s: %w", full, err)
			}
			if !bytes.Equal(have, files[p]) {
				stale = append(stale, full)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", full, err)
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", full, err)
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", full)
	}
	if len(stale) > 0 {
		return fmt.Errorf("out of date (render them again without --check):\n  %s", strings.Join(stale, "\n  "))
	}
	if check {
		fmt.Fprintf(e.stdout, "%d file(s) up to date\n", len(paths))
	}
	return nil
}

// runProbe runs `fanout deploy probe [URL]`.
func runProbe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("deploy probe", e, helpDeploy)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	target := "http://127.0.0.1:9464/readyz"
	switch fs.NArg() {
	case 0:
	case 1:
		target = fs.Arg(0)
	default:
		return usageError{fmt.Sprintf("unexpected argument %q: give one URL", fs.Arg(1))}
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("%q is not an http(s) URL", target)}
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", target, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", target, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probe %s: %s", target, resp.Status)
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", target, resp.Status)
	return nil
}
