#!/usr/bin/env bash
# Local FerretDB (MongoDB wire protocol) on the PostgreSQL of postgres.sh.
#
#   deploy/local/ferretdb.sh start    # mongodb://127.0.0.1:${FANOUT_FERRETDB_PORT:-27018}/
#   deploy/local/ferretdb.sh stop
#   deploy/local/ferretdb.sh status   # exit 0 when running
#   deploy/local/ferretdb.sh build    # only build $FANOUT_CACHE/bin/fanout-ferretdb
#
# Runs deploy/local/ferretdb (FerretDB v1.24.2 embedded; the upstream ferretdb
# binary from `go install` panics at start). The binary is rebuilt only when
# it is missing or older than its source, go.mod or go.sum. "Up" means the
# binary printed its URI, which it does after a listDatabases round trip
# through the backend.
#
# A second listener speaks TLS on port+1 (FerretDB's own TLS listener) with
# a certificate for 127.0.0.1/localhost from deploy/local/tlsgen (CA and an
# unrelated CA in $FANOUT_RUN/ferretdb/tls). With the postgresql handler and
# postgres.sh's store.env (the fanout_store role, password checked by
# PostgreSQL), start writes $FANOUT_RUN/ferretdb/tls.env:
# FANOUT_TEST_MONGO_TLS_URI=mongodb://fanout_store:...@127.0.0.1:<port+1>/?tls=true&tlsCAFile=...&authMechanism=PLAIN
# and FANOUT_TEST_MONGO_TLS_DIR, which deploy/local/test.sh exports.
#
# Measured (2-core machine, 2026-11-27): build with an empty Go build cache
# 80 s (109 s while other builds shared the cores), with a warm one 2.5 s;
# start with PostgreSQL up: under 1 s. Binary: 40 MB.
#
# Environment: FANOUT_CACHE (~/.cache/fanout), FANOUT_RUN (/tmp/fanout-run),
# FANOUT_FERRETDB_PORT (27018), FANOUT_FERRETDB_TLS_PORT (port+1), FANOUT_FERRETDB_HANDLER (postgresql | sqlite),
# FANOUT_PG_PORT (15432; the PostgreSQL URL is
# postgres://postgres@127.0.0.1:$FANOUT_PG_PORT/ferretdb unless
# FANOUT_FERRETDB_PG_URL is set), FANOUT_FERRETDB_LOG (error).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${FANOUT_CACHE:-$HOME/.cache/fanout}"
run="${FANOUT_RUN:-/tmp/fanout-run}/ferretdb"
port="${FANOUT_FERRETDB_PORT:-27018}"
tls_port="${FANOUT_FERRETDB_TLS_PORT:-$((port + 1))}"
pg_run="${FANOUT_RUN:-/tmp/fanout-run}/postgres"
tlsgen="$cache/bin/fanout-tlsgen"
handler="${FANOUT_FERRETDB_HANDLER:-postgresql}"
pg_port="${FANOUT_PG_PORT:-15432}"
pg_url="${FANOUT_FERRETDB_PG_URL:-postgres://postgres@127.0.0.1:$pg_port/ferretdb}"
bin="$cache/bin/fanout-ferretdb"
pidfile="$run/ferretdb.pid"

log() { printf 'ferretdb.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

build() {
	local t0=$SECONDS
	if [[ -x "$bin" ]] && [[ -z "$(find "$here/ferretdb" "$root/go.mod" "$root/go.sum" -newer "$bin" -print -quit)" ]]; then
		return 0
	fi
	command -v go >/dev/null || die "go not found"
	mkdir -p "$(dirname "$bin")"
	log "building $bin"
	(cd "$root" && go build -o "$bin.tmp.$$" ./deploy/local/ferretdb) || { rm -f "$bin.tmp.$$"; die "build failed"; }
	mv "$bin.tmp.$$" "$bin"
	log "built in $((SECONDS - t0)) s"
}

# Builds deploy/local/tlsgen when missing or older than its source.
build_tlsgen() {
	if [[ -x "$tlsgen" ]] && [[ -z "$(find "$here/tlsgen" -newer "$tlsgen" -print -quit)" ]]; then
		return 0
	fi
	mkdir -p "$(dirname "$tlsgen")"
	(cd "$root" && go build -o "$tlsgen.tmp.$$" ./deploy/local/tlsgen) || { rm -f "$tlsgen.tmp.$$"; die "building tlsgen failed"; }
	mv "$tlsgen.tmp.$$" "$tlsgen"
}

running_pid() {
	local pid
	[[ -f "$pidfile" ]] || return 1
	pid="$(cat "$pidfile")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	printf '%s\n' "$pid"
}

start() {
	local pid t0=$SECONDS
	if pid="$(running_pid)"; then
		port_open "$port" || die "pid $pid is running but 127.0.0.1:$port does not answer"
		log "already running (pid $pid)"
		echo "mongodb://127.0.0.1:$port/"
		return 0
	fi
	port_open "$port" && die "127.0.0.1:$port is in use by another process"
	port_open "$tls_port" && die "127.0.0.1:$tls_port (TLS) is in use by another process"
	local args=(-listen "127.0.0.1:$port" -handler "$handler" -log-level "${FANOUT_FERRETDB_LOG:-error}"
		-listen-tls "127.0.0.1:$tls_port" -tls-cert-file "$run/tls/server.pem" -tls-key-file "$run/tls/server.key")
	case "$handler" in
	postgresql)
		port_open "$pg_port" || die "PostgreSQL is not answering on 127.0.0.1:$pg_port (run deploy/local/postgres.sh start)"
		args+=(-postgresql-url "$pg_url")
		;;
	sqlite) args+=(-sqlite-dir "$run/sqlite") ;;
	*) die "FANOUT_FERRETDB_HANDLER=$handler: want postgresql or sqlite" ;;
	esac
	build
	build_tlsgen

	rm -rf "$run"
	mkdir -p "$run"
	"$tlsgen" -dir "$run/tls" -hosts 127.0.0.1,localhost || die "generating certificates into $run/tls failed"
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$bin" "${args[@]}" \
		</dev/null >"$run/ferretdb.out" 2>"$run/ferretdb.log" &

	local deadline=$((SECONDS + 60))
	until grep -q '^mongodb://' "$run/ferretdb.out" 2>/dev/null; do
		if [[ -f "$pidfile" ]] && ! running_pid >/dev/null; then
			tail -n 20 "$run/ferretdb.log" >&2 || true
			die "fanout-ferretdb exited during start (log: $run/ferretdb.log)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$run/ferretdb.log" >&2 || true
			stop || true
			die "fanout-ferretdb not ready within 60 s (log: $run/ferretdb.log)"
		fi
		sleep 0.1
	done
	port_open "$port" || die "fanout-ferretdb printed its URI but 127.0.0.1:$port does not answer"
	port_open "$tls_port" || die "127.0.0.1:$tls_port (TLS) does not answer"
	if [[ "$handler" == postgresql && -f "$pg_run/store.env" ]]; then
		(
			# shellcheck disable=SC1091
			source "$pg_run/store.env"
			printf 'export FANOUT_TEST_MONGO_TLS_URI=%q\nexport FANOUT_TEST_MONGO_TLS_DIR=%q\n' \
				"mongodb://$FANOUT_TEST_STORE_USER:$FANOUT_TEST_STORE_PASSWORD@127.0.0.1:$tls_port/?tls=true&tlsCAFile=$run/tls/ca.pem&authMechanism=PLAIN" \
				"$run/tls" >"$run/tls.env"
		)
		chmod 600 "$run/tls.env"
		log "TLS listener 127.0.0.1:$tls_port; user fanout_store; URI in $run/tls.env"
	else
		log "TLS listener 127.0.0.1:$tls_port (no $pg_run/store.env: no password-checked user, no tls.env)"
	fi
	log "FerretDB ($handler) up in $((SECONDS - t0)) s (pid $(cat "$pidfile"), log $run/ferretdb.log)"
	echo "mongodb://127.0.0.1:$port/"
}

stop() {
	local pid i
	if ! pid="$(running_pid)"; then
		log "not running"
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still running after 15 s; killing"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$pidfile"
	log "stopped (pid $pid)"
}

status() {
	local pid
	if pid="$(running_pid)" && port_open "$port"; then
		echo "running: pid $pid, mongodb://127.0.0.1:$port/ ($handler)"
		return 0
	fi
	echo "not running"
	return 1
}

case "${1:-}" in
build) build ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 {start|stop|status|build}" >&2
	exit 2
	;;
esac
