# fanout: developer and CI entry points.
#
#   make test           all Go tests with -race against real Kafka and FerretDB-on-PostgreSQL
#                       (deploy/local/test.sh starts what is not running and stops it after);
#                       ARGS='-run X ./outbox/...' passes arguments to go test
#   make test-unit      go test ./... (kfake and embedded FerretDB-on-SQLite, no services)
#   make lint           gofmt -l, go vet, staticcheck
#   make services-up    start Kafka, PostgreSQL and FerretDB and leave them running
#   make services-down  stop them

SHELL := /bin/bash
GO ?= go
# Pinned: v0.8.2 runs with Go 1.26. A staticcheck on PATH is used instead when present.
STATICCHECK_PKG ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
ARGS ?=

.PHONY: test test-unit lint services-up services-down

test:
	bash deploy/local/test.sh $(ARGS)

test-unit:
	$(GO) test ./...

lint:
	@out="$$(gofmt -l .)"; \
	if [[ -n "$$out" ]]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then \
		echo staticcheck ./...; staticcheck ./...; \
	else \
		echo "$(GO) run $(STATICCHECK_PKG) ./..."; $(GO) run $(STATICCHECK_PKG) ./...; \
	fi

services-up:
	bash deploy/local/kafka.sh start
	bash deploy/local/postgres.sh start
	bash deploy/local/ferretdb.sh start
	@echo "export FANOUT_TEST_KAFKA_BROKERS=127.0.0.1:$${FANOUT_KAFKA_PORT:-19092}"
	@echo "export FANOUT_TEST_MONGO_URI=mongodb://127.0.0.1:$${FANOUT_FERRETDB_PORT:-27018}/"

services-down:
	bash deploy/local/ferretdb.sh stop
	bash deploy/local/postgres.sh stop
	bash deploy/local/kafka.sh stop
