#!/usr/bin/env bash
# Local Apache Kafka (real broker, KRaft, single node) for fanout's tests.
#
#   deploy/local/kafka.sh fetch    # jars from Maven Central into the cache (idempotent)
#   deploy/local/kafka.sh start    # fresh broker on 127.0.0.1:${FANOUT_KAFKA_PORT:-19092}
#   deploy/local/kafka.sh stop
#   deploy/local/kafka.sh status   # exit 0 when running
#
# What worked (measured on the 2-core / Java 17 / Maven 3.8.7 machine, 2026-11-27):
# - org.apache.kafka:kafka_2.13:4.4.0 from Maven Central, with slf4j-api 2.0.17
#   pinned (Kafka's pom resolves 1.7.36, which does not load the SLF4J 2
#   provider of log4j-slf4j2-impl) and
#   log4j-slf4j2-impl/log4j-core 2.24.3, copied by
#   `mvn dependency:copy-dependencies -DincludeScope=runtime`: 45 jars, 43 MB.
#   Fetch with an empty ~/.m2 (plugins included): 8 s, twice; with the
#   plugins already in ~/.m2: 5-6 s. 4.0.0 resolved and ran the same way.
# - Format: main class `kafka.tools.StorageTool format -t <id> -c server.properties`
#   (in kafka_2.13-4.4.0.jar; static quorum via controller.quorum.voters, so no
#   --standalone needed): about 1.2 s. If a version lacks that class, the
#   script tries `org.apache.kafka.tools.StorageTool` (untested: no 4.x
#   version here needed it).
# - Broker: main class `kafka.Kafka server.properties`, process.roles=broker,controller,
#   -Xmx512m -Xms128m. `start` (format + broker until ApiVersions answers):
#   5-7 s, 12.6 s once while other builds loaded both cores; 4.0.0: 4.6 s.
#   `stop` (SIGTERM, controlled shutdown): about 2 s.
# - Readiness: Kafka binds its listener before it serves requests, so a TCP
#   connect proves little; "ready" is an ApiVersions v0 request sent over
#   bash's /dev/tcp that gets its answer. Creating a topic and producing right
#   after that worked in every run (testenv.CreateTopic also retries).
#
# Security listeners (besides PLAINTEXT, which the controller and inter-broker
# traffic keep using):
# - SASL_SSL on port+2 with PLAIN and SCRAM-SHA-512, SSL on port+3 with
#   ssl.client.auth=required (mutual TLS). Certificates: deploy/local/tlsgen
#   (built once into $FANOUT_CACHE/bin/fanout-tlsgen) writes a test CA, the
#   broker certificate for 127.0.0.1/localhost, a client certificate, an
#   expired one and an unrelated CA into $FANOUT_RUN/kafka/tls. Kafka reads
#   them as they are: ssl.keystore.type=PEM with an unencrypted PKCS#8 EC key
#   (no ssl.key.password), ssl.truststore.type=PEM.
# - PLAIN users come from the listener's JAAS line in server.properties; the
#   SCRAM-SHA-512 user is written into the metadata log at format time
#   (`format --add-scram 'SCRAM-SHA-512=[name=...,password=...]'`), so no
#   second JVM (kafka-configs) runs after the broker is up. Passwords are
#   random per start.
# - `start` writes $FANOUT_RUN/kafka/security.env (FANOUT_TEST_KAFKA_SASL_SSL,
#   FANOUT_TEST_KAFKA_SSL, FANOUT_TEST_KAFKA_TLS_DIR, the users and
#   passwords), which deploy/local/test.sh exports to the tests.
# - Measured 2026-12-01 on the same machine while other helpers' builds and
#   tests kept the load average at 12-14 on its 2 cores: `start` with the
#   security listeners 18 s and 15 s, the same script without them (main)
#   12 s and 25 s, alternating: no difference visible in that noise. The
#   extra work is tlsgen (about 0.05 s; its first build 1.6 s with a warm
#   Go cache) and two SSL engines in the broker. Formatting with --add-scram
#   takes as long as without.
#
# Environment: FANOUT_CACHE (default ~/.cache/fanout), FANOUT_RUN (default
# /tmp/fanout-run), FANOUT_KAFKA_PORT (19092), FANOUT_KAFKA_CONTROLLER_PORT
# (port+1), FANOUT_KAFKA_SASL_SSL_PORT (port+2), FANOUT_KAFKA_SSL_PORT
# (port+3), FANOUT_KAFKA_VERSION (pin one version; default: 4.4.0, falling back
# to lower 4.x), FANOUT_KAFKA_HEAP (-Xmx512m -Xms128m).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FANOUT_CACHE:-$HOME/.cache/fanout}"
run="${FANOUT_RUN:-/tmp/fanout-run}/kafka"
port="${FANOUT_KAFKA_PORT:-19092}"
cport="${FANOUT_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
sasl_port="${FANOUT_KAFKA_SASL_SSL_PORT:-$((port + 2))}"
ssl_port="${FANOUT_KAFKA_SSL_PORT:-$((port + 3))}"
root="$(cd "$here/../.." && pwd)"
tlsgen="$cache/bin/fanout-tlsgen"
heap="${FANOUT_KAFKA_HEAP:--Xmx512m -Xms128m}"
versions="${FANOUT_KAFKA_VERSION:-4.4.0 4.3.1 4.2.0 4.1.1 4.0.0}"
pidfile="$run/kafka.pid"
tls="$run/tls"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Prints the libs dir of the first version in $versions that was fetched whole.
libs_dir() {
	local v
	for v in $versions; do
		if [[ -f "$cache/kafka-$v/libs/.complete" ]]; then
			printf '%s\n' "$cache/kafka-$v/libs"
			return 0
		fi
	done
	return 1
}

fetch() {
	local d
	if d="$(libs_dir)"; then
		log "jars present: $d (skip fetch)"
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
	local v tmp start=$SECONDS
	for v in $versions; do
		d="$cache/kafka-$v/libs"
		tmp="$cache/kafka-$v/libs.tmp.$$"
		rm -rf "$tmp"
		mkdir -p "$tmp"
		log "fetching org.apache.kafka:kafka_2.13:$v from Maven Central into $d"
		if mvn -B -q -f "$here/kafka/pom.xml" -Dkafka.version="$v" \
			dependency:copy-dependencies -DincludeScope=runtime \
			-DoutputDirectory="$tmp" >"$cache/kafka-$v/fetch.log" 2>&1; then
			touch "$tmp/.complete"
			rm -rf "$d"
			mv "$tmp" "$d"
			log "fetched $(find "$d" -name '*.jar' | wc -l) jars for Kafka $v in $((SECONDS - start)) s"
			return 0
		fi
		rm -rf "$tmp"
		log "Kafka $v did not resolve (see $cache/kafka-$v/fetch.log); trying the next version"
	done
	die "no Kafka version of '$versions' could be fetched"
}

# ApiVersions v0, correlation id 1, client id "probe": answered only once the
# broker serves requests. Returns 0 when the answer carries correlation id 1.
probe() {
	local out
	out="$(timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x01\x00\x05probe" >&3
		head -c 8 <&3 | od -An -tx1
	' _ "$port" 2>/dev/null)" || return 1
	[[ "$(echo $out)" == *" 00 00 00 01" ]]
}

port_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

running_pid() {
	local pid
	[[ -f "$pidfile" ]] || return 1
	pid="$(cat "$pidfile")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	printf '%s\n' "$pid"
}

# Kafka's Uuid string form: 16 random bytes, base64url without padding, not
# starting with '-' (Uuid.randomUuid avoids that too: it breaks command lines).
cluster_id() {
	local id
	while :; do
		id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
		[[ "$id" != -* ]] && break
	done
	printf '%s\n' "$id"
}

# Builds deploy/local/tlsgen when missing or older than its source.
build_tlsgen() {
	if [[ -x "$tlsgen" ]] && [[ -z "$(find "$here/tlsgen" -newer "$tlsgen" -print -quit)" ]]; then
		return 0
	fi
	command -v go >/dev/null || die "go not found (needed to generate the test certificates)"
	mkdir -p "$(dirname "$tlsgen")"
	(cd "$root" && go build -o "$tlsgen.tmp.$$" ./deploy/local/tlsgen) || { rm -f "$tlsgen.tmp.$$"; die "building tlsgen failed"; }
	mv "$tlsgen.tmp.$$" "$tlsgen"
}

# Writes the security listeners' addresses, users and certificate directory
# for deploy/local/test.sh (and anyone who sources the file).
write_security_env() {
	cat >"$run/security.env" <<EOF
export FANOUT_TEST_KAFKA_SASL_SSL=127.0.0.1:$sasl_port
export FANOUT_TEST_KAFKA_SSL=127.0.0.1:$ssl_port
export FANOUT_TEST_KAFKA_TLS_DIR=$tls
export FANOUT_TEST_KAFKA_PLAIN_USER=$1
export FANOUT_TEST_KAFKA_PLAIN_PASSWORD=$2
export FANOUT_TEST_KAFKA_SCRAM_USER=$3
export FANOUT_TEST_KAFKA_SCRAM_PASSWORD=$4
EOF
	chmod 600 "$run/security.env"
}

start() {
	local pid libs t0=$SECONDS
	if pid="$(running_pid)"; then
		probe || die "pid $pid is running but 127.0.0.1:$port does not answer"
		log "already running (pid $pid)"
		echo "127.0.0.1:$port"
		return 0
	fi
	port_open "$port" && die "127.0.0.1:$port is in use by another process"
	port_open "$cport" && die "127.0.0.1:$cport (controller) is in use by another process"
	port_open "$sasl_port" && die "127.0.0.1:$sasl_port (SASL_SSL) is in use by another process"
	port_open "$ssl_port" && die "127.0.0.1:$ssl_port (SSL) is in use by another process"
	libs="$(libs_dir)" || { fetch; libs="$(libs_dir)"; }
	command -v java >/dev/null || die "java not found (apt-get install openjdk-17-jre-headless)"

	build_tlsgen
	rm -rf "$run"
	mkdir -p "$run/data"
	"$tlsgen" -dir "$tls" -hosts 127.0.0.1,localhost || die "generating certificates into $tls failed"
	local plain_user=plainuser scram_user=scramuser plain_pass scram_pass
	plain_pass="plain-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	scram_pass="scram-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sasl_port,SSL://127.0.0.1:$ssl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_port,SSL://127.0.0.1:$ssl_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
ssl.keystore.type=PEM
ssl.keystore.location=$tls/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$plain_user="$plain_pass";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$run/data
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
EOF
	cat >"$run/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="$run/server.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.server.KafkaRaftServer" level="info"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="info"/>
  </Loggers>
</Configuration>
EOF
	local jopts=(-cp "$libs/*" -Djava.awt.headless=true
		-Dlog4j2.configurationFile="$run/log4j2.xml" -Dlog4j2.disable.jmx=true)

	local id cls ok=""
	id="$(cluster_id)"
	for cls in kafka.tools.StorageTool org.apache.kafka.tools.StorageTool; do
		if java -Xmx256m -XX:TieredStopAtLevel=1 "${jopts[@]}" "$cls" format \
			-t "$id" -c "$run/server.properties" \
			--add-scram "SCRAM-SHA-512=[name=$scram_user,password=$scram_pass]" \
			>"$run/format.log" 2>&1; then
			ok=1
			break
		fi
		grep -q "Could not find or load main class\|ClassNotFoundException" "$run/format.log" || break
	done
	[[ -n "$ok" ]] || { cat "$run/format.log" >&2; die "formatting $run/data failed"; }

	# setsid: own session, so a Ctrl-C in the shell that started it does not
	# reach it; the pid file is the JVM's pid (bash execs java).
	# shellcheck disable=SC2086
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
		java $heap -XX:+UseG1GC "${jopts[@]}" kafka.Kafka "$run/server.properties" \
		</dev/null >"$run/kafka.out" 2>&1 &

	local deadline=$((SECONDS + ${FANOUT_KAFKA_START_TIMEOUT:-60}))
	while ! probe; do
		if ! running_pid >/dev/null && [[ -f "$pidfile" ]]; then
			tail -n 30 "$run/kafka.out" "$run/server.log" >&2 || true
			die "broker exited during start (logs in $run)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 30 "$run/kafka.out" "$run/server.log" >&2 || true
			stop || true
			die "broker did not answer on 127.0.0.1:$port within ${FANOUT_KAFKA_START_TIMEOUT:-60} s (logs in $run)"
		fi
		sleep 0.2
	done
	# All listeners are bound together; check the TLS ones anyway, since
	# their tests would otherwise fail with a less obvious error.
	port_open "$sasl_port" || die "127.0.0.1:$sasl_port (SASL_SSL) does not answer (logs in $run)"
	port_open "$ssl_port" || die "127.0.0.1:$ssl_port (SSL) does not answer (logs in $run)"
	write_security_env "$plain_user" "$plain_pass" "$scram_user" "$scram_pass"
	log "listeners: PLAINTEXT 127.0.0.1:$port, SASL_SSL (PLAIN, SCRAM-SHA-512) 127.0.0.1:$sasl_port, SSL (client certificates) 127.0.0.1:$ssl_port; certificates in $tls; users in $run/security.env"
	log "Kafka $(basename "$(dirname "$libs")" | sed 's/^kafka-//') up in $((SECONDS - t0)) s (pid $(cat "$pidfile"), logs in $run)"
	echo "127.0.0.1:$port"
}

stop() {
	local pid i
	if ! pid="$(running_pid)"; then
		log "not running"
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still running after 30 s; killing"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$pidfile"
	log "stopped (pid $pid)"
}

status() {
	local pid
	if pid="$(running_pid)" && probe; then
		echo "running: pid $pid, 127.0.0.1:$port"
		return 0
	fi
	echo "not running"
	return 1
}

case "${1:-}" in
fetch) fetch ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 {fetch|start|stop|status}" >&2
	exit 2
	;;
esac
