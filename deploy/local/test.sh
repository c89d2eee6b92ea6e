#!/usr/bin/env bash
# Runs the Go tests against real servers: Apache Kafka (kafka.sh) and FerretDB
# on PostgreSQL (postgres.sh, ferretdb.sh). A service whose port already answers
# is used as it is; the ones this script starts are stopped when it exits.
#
#   deploy/local/test.sh                         # go test -race -count=1 -timeout 40m ./...
#   deploy/local/test.sh ./internal/testenv/...  # other packages
#   deploy/local/test.sh -run TestX ./outbox/... # any go test flags
#   GOTEST_FLAGS='-v -p 1' deploy/local/test.sh  # flags before the arguments
#
# Arguments go to `go test` after its default flags; ./... is added unless an
# argument names packages (., ./x, ../x, github.com/fanout-dev/...). The exit
# status is go test's.
#
# Sets for the tests: FANOUT_TEST_KAFKA_BROKERS=127.0.0.1:$FANOUT_KAFKA_PORT
# and FANOUT_TEST_MONGO_URI=mongodb://127.0.0.1:$FANOUT_FERRETDB_PORT/, and,
# when the broker's SASL_SSL listener answers, the variables of
# $FANOUT_RUN/kafka/security.env that kafka.sh writes: FANOUT_TEST_KAFKA_SASL_SSL,
# FANOUT_TEST_KAFKA_SSL, FANOUT_TEST_KAFKA_TLS_DIR and the test users; when
# FerretDB's TLS listener answers, FANOUT_TEST_MONGO_TLS_URI and
# FANOUT_TEST_MONGO_TLS_DIR from ferretdb.sh's tls.env. With the default
# packages (./...), the store suite (./internal/store/) then runs a second
# time with FANOUT_TEST_MONGO_URI set to that TLS URI with credentials.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
kafka_port="${FANOUT_KAFKA_PORT:-19092}"
kafka_sasl_port="${FANOUT_KAFKA_SASL_SSL_PORT:-$((kafka_port + 2))}"
kafka_security_env="${FANOUT_RUN:-/tmp/fanout-run}/kafka/security.env"
pg_port="${FANOUT_PG_PORT:-15432}"
ferret_port="${FANOUT_FERRETDB_PORT:-27018}"
ferret_tls_port="${FANOUT_FERRETDB_TLS_PORT:-$((ferret_port + 1))}"
ferret_tls_env="${FANOUT_RUN:-/tmp/fanout-run}/ferretdb/tls.env"

log() { printf '==> test.sh: %s\n' "$*" >&2; }
port_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

started=()
kafka_job=""
cleanup() {
	local i svc
	# A Kafka start still running in the background must end before its stop.
	if [[ -n "$kafka_job" ]]; then wait "$kafka_job" 2>/dev/null || true; fi
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		svc="${started[i]}"
		log "stopping $svc"
		bash "$here/$svc.sh" stop || log "stopping $svc failed"
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
# Kafka takes longest: start it in the background while the store comes up.
if port_open "$kafka_port"; then
	log "kafka: 127.0.0.1:$kafka_port answers; using it (not stopping it afterwards)"
else
	log "kafka: starting in the background"
	started+=(kafka)
	bash "$here/kafka.sh" start >/dev/null &
	kafka_job=$!
fi
if port_open "$ferret_port"; then
	log "ferretdb: 127.0.0.1:$ferret_port answers; using it (not stopping it afterwards)"
else
	# PostgreSQL is needed only to start FerretDB.
	if port_open "$pg_port"; then
		log "postgres: 127.0.0.1:$pg_port answers; using it (not stopping it afterwards)"
	else
		log "postgres: starting"
		started+=(postgres)
		bash "$here/postgres.sh" start >/dev/null
	fi
	log "ferretdb: starting"
	started+=(ferretdb)
	bash "$here/ferretdb.sh" start >/dev/null
fi
if [[ -n "$kafka_job" ]]; then
	rc=0
	wait "$kafka_job" || rc=$?
	kafka_job=""
	if ((rc != 0)); then
		log "kafka: start failed"
		exit 1
	fi
fi
log "services ready in $((SECONDS - t0)) s"

export FANOUT_TEST_KAFKA_BROKERS="127.0.0.1:$kafka_port"
export FANOUT_TEST_MONGO_URI="mongodb://127.0.0.1:$ferret_port/"
# A broker started by an older kafka.sh has no security listeners; the tests
# that need them then skip, saying so.
if [[ -f "$kafka_security_env" ]] && port_open "$kafka_sasl_port"; then
	# shellcheck disable=SC1090
	source "$kafka_security_env"
	log "FANOUT_TEST_KAFKA_SASL_SSL=$FANOUT_TEST_KAFKA_SASL_SSL FANOUT_TEST_KAFKA_SSL=$FANOUT_TEST_KAFKA_SSL FANOUT_TEST_KAFKA_TLS_DIR=$FANOUT_TEST_KAFKA_TLS_DIR"
else
	log "kafka: no security listeners (no $kafka_security_env or 127.0.0.1:$kafka_sasl_port closed); SASL/TLS tests will skip"
fi
if [[ -f "$ferret_tls_env" ]] && port_open "$ferret_tls_port"; then
	# shellcheck disable=SC1090
	source "$ferret_tls_env"
	log "FANOUT_TEST_MONGO_TLS_URI: 127.0.0.1:$ferret_tls_port, tls=true, user and password set"
else
	log "ferretdb: no TLS listener (no $ferret_tls_env or 127.0.0.1:$ferret_tls_port closed); store TLS tests will skip"
fi

pkgs=(./...)
for a in "$@"; do
	case "$a" in
	. | ./* | ../* | github.com/fanout-dev/*) pkgs=() ;;
	esac
done
# shellcheck disable=SC2206
flags=(-race -count=1 -timeout 40m ${GOTEST_FLAGS:-})

log "FANOUT_TEST_KAFKA_BROKERS=$FANOUT_TEST_KAFKA_BROKERS FANOUT_TEST_MONGO_URI=$FANOUT_TEST_MONGO_URI"
log "go test ${flags[*]} $* ${pkgs[*]}"
cd "$root"
set +e
go test "${flags[@]}" "$@" "${pkgs[@]}"
rc=$?
if ((${#pkgs[@]} > 0)) && [[ -n "${FANOUT_TEST_MONGO_TLS_URI:-}" ]]; then
	log "store suite again over FerretDB's TLS listener with credentials"
	FANOUT_TEST_MONGO_URI="$FANOUT_TEST_MONGO_TLS_URI" go test "${flags[@]}" "$@" ./internal/store/
	rc2=$?
	((rc != 0)) || rc=$rc2
fi
set -e
log "go test exited with $rc after $((SECONDS - t0)) s"
exit "$rc"
