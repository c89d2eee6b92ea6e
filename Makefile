# fanout: developer and CI entry points.
#
#   make test           all Go tests with -race against real Kafka and FerretDB-on-PostgreSQL
#                       (deploy/local/test.sh starts what is not running and stops it after);
#                       ARGS='-run X ./outbox/...' passes arguments to go test
#   make test-unit      go test ./... (kfake and embedded FerretDB-on-SQLite, no services)
#   make lint           gofmt -l, go mod tidy -diff (go.mod/go.sum must be tidy), go vet, staticcheck
#   make services-up    start Kafka, PostgreSQL and FerretDB and leave them running
#   make services-down  stop them
#   make image          the container image with podman (deploy/image/build.sh; IMAGE_TOOL=docker|buildah)
#   make image-test     build it, then run the projector, relay and a worker in it as the Kubernetes
#                       manifests do, against real Kafka and FerretDB (internal/imagetest)
#   make fuzz           the decoder's fuzz targets, FUZZTIME each (default 5m); the seed
#                       corpora (testdata/fuzz) also run in every plain go test

SHELL := /bin/bash
GO ?= go
# Pinned: v0.8.2 runs with Go 1.26. A staticcheck on PATH is used instead when present.
STATICCHECK_PKG ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
ARGS ?=
FUZZTIME ?= 5m

.PHONY: test test-unit lint services-up services-down image image-test fuzz

test:
	bash deploy/local/test.sh $(ARGS)

test-unit:
	$(GO) test ./...

lint:
	@out="$$(gofmt -l .)"; \
	if [[ -n "$$out" ]]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	@if ! $(GO) mod tidy -diff; then echo "go.mod/go.sum are not tidy: run go mod tidy and commit the result"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then \
		echo staticcheck ./...; staticcheck ./...; \
	else \
		echo "$(GO) run $(STATICCHECK_PKG) ./..."; $(GO) run $(STATICCHECK_PKG) ./...; \
	fi

# go test -fuzz takes one target in one package at a time.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./consumer/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./internal/strictjson/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeAvro$$' -fuzztime $(FUZZTIME) ./internal/registry/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeProtobuf$$' -fuzztime $(FUZZTIME) ./internal/registry/
	$(GO) test -run '^$$' -fuzz '^FuzzUnpackVersions$$' -fuzztime $(FUZZTIME) ./internal/store/

services-up:
	bash deploy/local/kafka.sh start
	bash deploy/local/postgres.sh start
	bash deploy/local/ferretdb.sh start
	@echo "export FANOUT_TEST_KAFKA_BROKERS=127.0.0.1:$${FANOUT_KAFKA_PORT:-19092}"
	@echo "export FANOUT_TEST_MONGO_URI=mongodb://127.0.0.1:$${FANOUT_FERRETDB_PORT:-27018}/"
	@echo "source $${FANOUT_RUN:-/tmp/fanout-run}/kafka/security.env   # SASL_SSL and mutual-TLS listeners"
	@echo "source $${FANOUT_RUN:-/tmp/fanout-run}/ferretdb/tls.env      # FerretDB over TLS with a password"

image:
	bash deploy/image/build.sh

image-test: image
	FANOUT_TEST_IMAGE=fanout:dev bash deploy/local/test.sh -run TestImage ./internal/imagetest/

services-down:
	bash deploy/local/ferretdb.sh stop
	bash deploy/local/postgres.sh stop
	bash deploy/local/kafka.sh stop

# Benchmarks and chaos runs (internal/bench, cmd/fanout-bench; results in docs/benchmarks.md):
#
#   make bench        B1-B9 on real Apache Kafka and FerretDB-on-PostgreSQL (started with deploy/local
#                     when not running, stopped after), each figure beside its baseline from the same run;
#                     writes docs/benchmarks.md, docs/benchmarks.json and SVG plots (about 12-15 minutes).
#                     BENCH_ARGS='-only B3,B4 -scale 0.5' runs some, smaller
#   make bench-smoke  the short CI form (about 2-3 minutes): B1's direct-link pair and B7 at 1,000 READ
#                     documents with small counts; fails when a figure's ratio to its baseline from the
#                     same run falls below half its reference ratio (internal/bench/smoke.go), never on
#                     absolute times; writes no docs
#   make chaos        every role as a child process against a private broker and store behind toxiproxy:
#                     20,000 events over 2,000 aggregates through random SIGKILLs, a broker and a store
#                     restart, cut and slow links and faulty downstreams; prints the ledger and exits
#                     non-zero on any violation (about 5 minutes). CHAOS_ARGS='-seed 7' etc.
#   make chaos-long   the same with 100,000 events over 10,000 aggregates and a 15-minute window

BENCH_ARGS ?=
CHAOS_ARGS ?=

.PHONY: bench bench-smoke chaos chaos-long

bench:
	$(GO) run ./cmd/fanout-bench bench $(BENCH_ARGS)

bench-smoke:
	$(GO) run ./cmd/fanout-bench bench -smoke -docs=

chaos:
	$(GO) run ./cmd/fanout-bench chaos $(CHAOS_ARGS)

chaos-long:
	$(GO) run ./cmd/fanout-bench chaos -events 100000 -aggregates 10000 -duration 15m -settle 20m $(CHAOS_ARGS)
