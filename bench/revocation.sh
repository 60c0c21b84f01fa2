#!/usr/bin/env bash
# bench/revocation.sh: revocation through the Redis source on two Caddy
# processes under load (issue 12): 100 credential hashes, then 100 consumer
# hashes, deleted one by one; for each, the time from the DEL returning until
# both instances answer 401. Prints p50, p99 and max. Needs redis-server.
#
# Env: CADDY (a prebuilt binary: skips the build), LOAD (8 concurrent
# requests per instance).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
build_caddy
(cd "$ROOT/bench" && go build -o "$OUT/revocation" ./cmd/revocation) || die "building the revocation tool failed"
"$OUT/revocation" -caddy "$CADDY" -load "${LOAD:-8}"
