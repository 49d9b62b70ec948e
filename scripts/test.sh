#!/usr/bin/env bash
# The test command: vet, the Go tests (unit, black-box HTTP, browser, and the
# cluster tests when PostgreSQL/Redis/NATS answer), the same suites again on
# PostgreSQL, bounded fuzzing, the SDK's Node tests, and the Node example.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

echo "== go vet"
go vet ./...

echo "== go test (SQLite)"
go test -race -timeout 15m ./...

PG_URL="${PARLEY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
if pg_isready -q -d "$PG_URL" 2>/dev/null; then
  echo "== go test (PostgreSQL store)"
  PARLEY_TEST_DATABASE_URL="$PG_URL" go test -timeout 10m ./client/... ./internal/httpapi/... ./internal/chat/... ./internal/presence/... ./internal/stream/... ./internal/store/... ./internal/hostile/... ./internal/webhook/...
else
  echo "== go test (PostgreSQL store): SKIPPED, no PostgreSQL at $PG_URL"
fi

echo "== fuzz (bounded)"
# A count, not a duration: Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" failure when a -fuzztime duration runs out
# (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME="${FUZZTIME:-20000x}"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $target ($pkg)"
    out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1) || { echo "$out"; exit 1; }
  done
done

echo "== SDK tests (node)"
node --test internal/web/sdktest/

echo "== examples/node-backend (node, against the built binary)"
# The example of docs/integrate.md: an app's backend signing tokens with the
# npm jose package, the server API, and the SDK, against a real Parley.
bin_dir=$(mktemp -d)
trap 'rm -rf "$bin_dir"' EXIT
go build -o "$bin_dir/parley" ./cmd/parley
(cd examples/node-backend && npm ci --no-audit --no-fund --loglevel=error && PARLEY_BIN="$bin_dir/parley" npm test --silent)

echo "== webhooks (node: the standardwebhooks package verifies real deliveries)"
(cd internal/webhook/nodetest && npm ci --no-audit --no-fund --loglevel=error && PARLEY_BIN="$bin_dir/parley" node --test)

echo "== docker compose smoke test (deploy/)"
./deploy/smoke.sh
