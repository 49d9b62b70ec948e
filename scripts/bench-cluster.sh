#!/usr/bin/env bash
# Starts (and stops) a local Parley cluster for `parley bench`: N nodes on one
# fresh PostgreSQL database and one Redis bus, optionally behind a private
# nginx, all on 127.0.0.1 of this machine. It only starts and stops its own
# processes, recorded in the state dir.
#
#   scripts/bench-cluster.sh start [-n 3] [--nginx] [--dir /tmp/parley-cluster] [--bin ./parley]
#   . /tmp/parley-cluster/env     # NODE_URLS=http://…,…  NODE_PIDS=1,2,3  NGINX_URL  NGINX_PIDS  PG_PID  REDIS_PID
#   parley bench chat --url "$NODE_URLS" --pid "$NODE_PIDS"      # straight to the nodes
#   parley bench chat --url "$NGINX_URL" --pid "$NODE_PIDS"      # through nginx
#   scripts/bench-cluster.sh stop [--dir /tmp/parley-cluster]     # stops them, drops the database
#
# Environment: PG_URL (default postgres://postgres@127.0.0.1:5432), REDIS_URL
# (default redis://127.0.0.1:6379), BASE_PORT (default 27181; nginx listens on
# BASE_PORT-1), NODE_FLAGS (extra flags for every node). Nodes get the flags
# bench gives a server it spawns (--rate-limit 0, --max-conns-per-ip 0,
# --password-cost 4, --api-keys bench-key, pprof on its own port, BASE_PORT +
# 1000 + i) and --idle-timeout 0 (bench users stay idle between runs).
set -euo pipefail

cmd=${1:-}; shift || true
n=3 nginx=0 dir=/tmp/parley-cluster bin=""
while [ $# -gt 0 ]; do
	case $1 in
	-n) n=$2; shift 2 ;;
	--nginx) nginx=1; shift ;;
	--dir) dir=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	*) echo "bench-cluster: unknown argument $1" >&2; exit 2 ;;
	esac
done
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
BASE_PORT=${BASE_PORT:-27181}

stop() {
	[ -f "$dir/env" ] || { echo "bench-cluster: nothing started in $dir" >&2; return 0; }
	# shellcheck disable=SC1091
	. "$dir/env"
	for p in ${NODE_PIDS//,/ } ${NGINX_MASTER:-}; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in ${NODE_PIDS//,/ } ${NGINX_MASTER:-}; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
	redis-cli -u "$REDIS_URL" --scan --pattern "$DB_NAME*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null || true
	rm -rf "$dir"
	echo "bench-cluster: stopped, dropped $DB_NAME"
}

start() {
	[ ! -e "$dir/env" ] || { echo "bench-cluster: $dir/env exists: stop that cluster first" >&2; exit 1; }
	if [ -z "$bin" ]; then
		bin=$dir.bin/parley
		mkdir -p "$dir.bin"
		(cd "$(dirname "$0")/.." && go build -o "$bin" ./cmd/parley)
	fi
	for port in $(seq $((BASE_PORT - 1)) $((BASE_PORT + n - 1))); do
		if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
			echo "bench-cluster: port $port is taken: set BASE_PORT" >&2
			exit 1
		fi
	done
	mkdir -p "$dir"
	ulimit -n "$(ulimit -Hn)"
	db=parley_bench_$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
	psql "$PG_URL/postgres" -qc "CREATE DATABASE $db" >/dev/null
	secret=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	urls=() pids=()
	for i in $(seq "$n"); do
		port=$((BASE_PORT + i - 1))
		# shellcheck disable=SC2086
		"$bin" serve --addr "127.0.0.1:$port" --data-dir "$dir/node$i" \
			--database-url "$PG_URL/$db?sslmode=disable" --bus "$REDIS_URL/?prefix=$db" \
			--jwt-secret "$secret" --api-keys bench-key --rate-limit 0 --max-conns-per-ip 0 --password-cost 4 \
			--max-streams-per-user 16 --idle-timeout 0 --pprof-addr "127.0.0.1:$((port + 1000))" --log-level warn ${NODE_FLAGS:-} \
			>"$dir/node$i.log" 2>&1 &
		pids+=("$!") urls+=("http://127.0.0.1:$port")
		# Nodes migrate the schema in turn; start them one after the other.
		for _ in $(seq 300); do
			curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
			kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/node$i.log" >&2; exit 1; }
			sleep 0.1
		done
	done
	ngurl="" ngmaster="" ngpids=""
	if [ "$nginx" = 1 ]; then
		ngport=$((BASE_PORT - 1))
		mkdir -p "$dir/nginx/logs"
		{
			echo "worker_processes 2; worker_rlimit_nofile 20000; pid $dir/nginx/nginx.pid;"
			echo "error_log $dir/nginx/logs/error.log warn;"
			echo "events { worker_connections 19000; multi_accept on; }"
			echo "http { access_log off; upstream parley {"
			for u in "${urls[@]}"; do echo "  server ${u#http://};"; done
			echo "  keepalive 256; }"
			echo "  server { listen 127.0.0.1:$ngport backlog=4096; client_max_body_size 2m;"
			echo "    location / { proxy_pass http://parley; proxy_http_version 1.1; proxy_set_header Connection \"\";"
			echo "      proxy_buffering off; proxy_cache off; proxy_read_timeout 1h; proxy_send_timeout 1h;"
			echo "      proxy_set_header Host \$host; proxy_connect_timeout 2s; proxy_next_upstream error timeout; } } }"
		} >"$dir/nginx/nginx.conf"
		nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g "daemon off;" >>"$dir/nginx/logs/error.log" 2>&1 &
		ngmaster=$!
		ngurl=http://127.0.0.1:$ngport
		for _ in $(seq 100); do curl -fs "$ngurl/healthz" >/dev/null && break; sleep 0.1; done
		kill -0 "$ngmaster" 2>/dev/null || { cat "$dir/nginx/logs/error.log" >&2; exit 1; }
		ngpids=$(pgrep -P "$ngmaster" | paste -sd, - || true)
	fi
	pg_pid=$(head -1 "$(psql "$PG_URL/postgres" -Atc 'show data_directory')/postmaster.pid" 2>/dev/null || true)
	redis_pid=$(redis-cli -u "$REDIS_URL" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
	nodes=$(IFS=,; echo "${urls[*]}") nodepids=$(IFS=,; echo "${pids[*]}")
	cat >"$dir/env" <<EOF
DB_NAME=$db
NODE_URLS=$nodes
NODE_PIDS=$nodepids
NGINX_URL=$ngurl
NGINX_MASTER=$ngmaster
NGINX_PIDS=$ngpids
PG_PID=$pg_pid
REDIS_PID=$redis_pid
PARLEY_BENCH_API_KEY=bench-key
export PARLEY_BENCH_API_KEY
EOF
	cat "$dir/env"
}

case $cmd in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start [-n N] [--nginx] [--dir DIR] [--bin PATH] | stop [--dir DIR]" >&2; exit 2 ;;
esac
