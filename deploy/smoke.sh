#!/usr/bin/env bash
# Smoke test of deploy/: build the image, start compose.yaml (three nodes,
# PostgreSQL, Redis, nginx) under a project name and port of its own, check
# that a client and a professional chat through nginx, and remove it all.
#
# Where no Docker engine answers (or compose is missing) it prints SKIPPED
# with the reason and exits 0: the rest of the test suite does not depend on
# it. PARLEY_SMOKE_URL=http://host:port runs only the HTTP checks, against a
# server already running.
set -euo pipefail
cd "$(dirname "$0")"

# check BASE_URL: what a newcomer does first, over HTTP only.
check() {
  local base=$1 run pro cl pro_id conv stream
  run=$(date +%s)$$
  curl -fsS "$base/readyz" | grep -q '"ready"' || { echo "FAIL: $base/readyz is not ready" >&2; return 1; }

  pro=$(post "$base/api/auth/register" "" "{\"username\":\"smoke-pro-$run\",\"password\":\"smoke-password\",\"role\":\"professional\"}")
  cl=$(post "$base/api/auth/register" "" "{\"username\":\"smoke-client-$run\",\"password\":\"smoke-password\",\"role\":\"client\"}")
  pro_id=$(field "$pro" '"user":{"id"')
  conv=$(post "$base/api/conversations" "$(field "$cl" '"token"')" \
    "{\"professional_id\":\"$pro_id\",\"subject\":\"smoke\",\"message\":{\"body\":\"hello from the smoke test\"}}")
  conv=$(field "$conv" '^{"id"')
  post "$base/api/conversations/$conv/messages" "$(field "$pro" '"token"')" '{"body":"hello back"}' >/dev/null

  # The client's stream, from the start of its log, through the proxy:
  # both messages arrive as events (curl stops after 3 s; the stream would not).
  stream=$(curl -s -N --max-time 3 -H "Authorization: Bearer $(field "$cl" '"token"')" \
    "$base/api/events?last_event_id=0" || true)
  for want in 'event: conversation.created' 'hello from the smoke test' 'hello back'; do
    grep -q "$want" <<<"$stream" || { echo "FAIL: the stream lacks \"$want\":" >&2; echo "$stream" >&2; return 1; }
  done
  echo "OK: ready, two users registered, a conversation and a reply, both streamed through $base"
}

# post URL TOKEN JSON: the answer's body; fails on any status but 2xx.
post() {
  local auth=()
  [ -n "$2" ] && auth=(-H "Authorization: Bearer $2")
  curl -fsS -X POST -H 'Content-Type: application/json' "${auth[@]}" -d "$3" "$1"
}

# field JSON KEY: the string value after KEY (a basic regular expression
# ending in a quoted name) in a JSON answer; enough for the ids and tokens
# here, with no jq needed.
field() {
  local v
  v=$(grep -o "$2:\"[^\"]*\"" <<<"$1" | head -n1 | sed 's/.*:"\(.*\)"$/\1/') || true
  [ -n "$v" ] || { echo "FAIL: no $2 in $1" >&2; return 1; }
  printf '%s' "$v"
}

if [ -n "${PARLEY_SMOKE_URL:-}" ]; then
  check "${PARLEY_SMOKE_URL%/}"
  exit
fi

skip() { echo "SKIPPED: $*"; exit 0; }
command -v docker >/dev/null || skip "docker is not installed"
if ! out=$(docker info --format '{{.ServerVersion}}' 2>&1); then
  skip "no Docker engine answers (docker info: $(tail -n1 <<<"$out"))"
fi
docker compose version >/dev/null 2>&1 || skip "the docker compose plugin is not installed"

project="parley-smoke-$$"
port="${PARLEY_SMOKE_PORT:-18080}"
export PARLEY_HTTP_PORT="$port"
export PARLEY_JWT_SECRET="smoke-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export POSTGRES_PASSWORD="smoke-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
compose() { docker compose -p "$project" -f compose.yaml "$@"; }
finish() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    compose ps >&2 || true
    compose logs --no-color --tail 40 >&2 || true
  fi
  compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
  exit "$rc"
}
trap finish EXIT

echo "building the image and starting deploy/compose.yaml as $project on 127.0.0.1:$port"
# --wait returns once every service is running and the healthy ones healthy:
# the three nodes' /readyz answer 200 and nginx has started after them.
timeout 900 docker compose -p "$project" -f compose.yaml up --build --detach --wait --quiet-pull
check "http://127.0.0.1:$port"
