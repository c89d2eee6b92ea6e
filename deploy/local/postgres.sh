#!/usr/bin/env bash
# Local PostgreSQL for FerretDB (the MongoDB-compatible store of `make test`).
#
#   deploy/local/postgres.sh install   # Debian's postgresql when initdb is missing
#   deploy/local/postgres.sh start     # fresh cluster on 127.0.0.1:${FANOUT_PG_PORT:-15432}
#   deploy/local/postgres.sh stop
#   deploy/local/postgres.sh status    # exit 0 when running
#
# The cluster is new at each start (initdb takes about a second; tests leave
# databases behind), trust authentication, listening on 127.0.0.1 only, with
# its Unix socket in the run dir, fsync off (test data only), and a database
# "ferretdb". Set FANOUT_PG_KEEP=1 to keep the data of an earlier start.
# One role needs a password: fanout_store (superuser, scram-sha-256 from
# 127.0.0.1, password random per start, written to $FANOUT_RUN/postgres/store.env),
# the user of ferretdb.sh's TLS listener tests: FerretDB 1.x passes a
# client's PLAIN credentials through to PostgreSQL, so PostgreSQL is what
# checks them. Superuser because FerretDB reads every database's metadata
# schema, which the trust-authenticated postgres user owns.
# As root, initdb/pg_ctl run as the `postgres` OS user (PostgreSQL refuses
# root); the run dir is then owned by postgres.
#
# Measured (2-core machine, Debian 12, PostgreSQL 15, 2026-11-27): the image
# of this machine kind already has Debian's postgresql 15 (so `install` is a
# no-op there); `apt-get install --reinstall` of its five packages took 15 s
# (an install from nothing was measured earlier at about 20 s). start (initdb
# + pg_ctl start + createdb): 2-3 s; stop: 0.2 s. Debian's policy-rc.d keeps
# the package's own "main" cluster (port 5432) from starting.
#
# Indexed _id lookups, like MongoDB's: FerretDB 1.24 filters by _id with
# `_jsonb->'_id' @> ...`, which its own btree index on `_jsonb->'_id'` cannot
# serve, so every _id equality (point read, guarded upsert, deleteOne) scans
# the table inside PostgreSQL. `start` therefore installs, in the ferretdb
# database, an event trigger that adds a GIN index (fastupdate off, so no
# pending list to scan) on `_jsonb->'_id'` to every table FerretDB creates,
# and sets plan_cache_mode = force_custom_plan. This is a setting of the test
# store, not of fanout. Measured (2 loaded cores, 50,000 documents, average
# of 50): point read 56 ms -> 0.9 ms, guarded update 54 ms -> 0.5 ms.
#
# Environment: FANOUT_RUN (default /tmp/fanout-run), FANOUT_PG_PORT (15432),
# FANOUT_PG_BIN (dir with initdb/pg_ctl; default: newest /usr/lib/postgresql/*/bin).
set -euo pipefail

run="${FANOUT_RUN:-/tmp/fanout-run}/postgres"
data="$run/data"
port="${FANOUT_PG_PORT:-15432}"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pg_bin() {
	local d
	if [[ -n "${FANOUT_PG_BIN:-}" ]]; then
		[[ -x "$FANOUT_PG_BIN/initdb" ]] || return 1
		printf '%s\n' "$FANOUT_PG_BIN"
		return 0
	fi
	# Newest version first.
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
		if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	done
	d="$(command -v initdb 2>/dev/null)" || return 1
	dirname "$(readlink -f "$d")"
}

install() {
	local bin
	if bin="$(pg_bin)"; then
		log "PostgreSQL present: $bin"
		return 0
	fi
	[[ "$(id -u)" == 0 ]] || die "PostgreSQL is missing; run as root (or: sudo apt-get install postgresql)"
	local t0=$SECONDS
	log "installing Debian's postgresql (apt-get update + install)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	bin="$(pg_bin)" || die "postgresql installed but no initdb found under /usr/lib/postgresql"
	log "installed $("$bin/postgres" --version) in $((SECONDS - t0)) s"
}

# as_pg runs a command as the owner of the cluster.
as_pg() {
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

port_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

is_running() {
	local bin
	bin="$(pg_bin)" || return 1
	[[ -f "$data/postmaster.pid" ]] || return 1
	as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

start() {
	local bin t0=$SECONDS
	bin="$(pg_bin)" || install
	bin="$(pg_bin)"
	if is_running; then
		log "already running ($data)"
		echo "postgres://postgres@127.0.0.1:$port/ferretdb"
		return 0
	fi
	port_open "$port" && die "127.0.0.1:$port is in use by another process"

	if [[ "${FANOUT_PG_KEEP:-}" != 1 || ! -f "$data/PG_VERSION" ]]; then
		rm -rf "$run"
		mkdir -p "$run"
		if [[ "$(id -u)" == 0 ]]; then
			id postgres >/dev/null 2>&1 || die "no postgres OS user (is the postgresql package installed?)"
			chown postgres: "$run"
			as_pg test -x "$run" || die "user postgres cannot reach $run (set FANOUT_RUN to a dir outside /root)"
		fi
		as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
			--no-sync >"$run/initdb.log" 2>&1 || { cat "$run/initdb.log" >&2; die "initdb failed"; }
		cat >>"$data/postgresql.conf" <<EOF

# deploy/local/postgres.sh: test cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
# FerretDB's _id filter is a jsonb containment: served by the GIN index below
# only with a plan made for the actual value.
plan_cache_mode = force_custom_plan
EOF
	fi
	# Trust on localhost only, no other hosts; fanout_store by password.
	# Written at every start, FANOUT_PG_KEEP or not.
	cat >"$data/pg_hba.conf" <<EOF
local all all trust
host  all fanout_store 127.0.0.1/32 scram-sha-256
host  all all 127.0.0.1/32 trust
EOF
	[[ "$(id -u)" != 0 ]] || chown postgres: "$data/pg_hba.conf"

	as_pg "$bin/pg_ctl" -D "$data" -l "$run/postgres.log" -w -t 60 start >/dev/null ||
		{ tail -n 30 "$run/postgres.log" >&2; die "pg_ctl start failed (log: $run/postgres.log)"; }

	local exists
	exists="$(as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = 'ferretdb'")"
	if [[ "$exists" != 1 ]]; then
		as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres ferretdb
	fi
	as_pg "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d ferretdb >/dev/null <<'SQL' ||
SET client_min_messages = warning;
CREATE OR REPLACE FUNCTION fanout_index_jsonb_id() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
	FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE object_type = 'table' LOOP
		IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = r.objid AND attname = '_jsonb' AND NOT attisdropped) THEN
			EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb->''_id'')) WITH (fastupdate = off)', r.object_identity);
		END IF;
	END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS fanout_index_jsonb_id;
CREATE EVENT TRIGGER fanout_index_jsonb_id ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
	EXECUTE FUNCTION fanout_index_jsonb_id();
SQL
		die "installing the _id index trigger failed"
	local store_pass
	store_pass="store-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	as_pg "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<EOF
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE fanout_store LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fanout_store') \gexec
ALTER ROLE fanout_store PASSWORD '$store_pass';
EOF
	printf 'export FANOUT_TEST_STORE_USER=fanout_store\nexport FANOUT_TEST_STORE_PASSWORD=%s\n' "$store_pass" >"$run/store.env"
	chmod 600 "$run/store.env"
	log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') up in $((SECONDS - t0)) s (data $data)"
	echo "postgres://postgres@127.0.0.1:$port/ferretdb"
}

stop() {
	local bin
	if ! is_running; then
		log "not running"
		return 0
	fi
	bin="$(pg_bin)"
	as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
	log "stopped"
}

status() {
	if is_running; then
		echo "running: 127.0.0.1:$port (data $data)"
		return 0
	fi
	echo "not running"
	return 1
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 {install|start|stop|status}" >&2
	exit 2
	;;
esac
