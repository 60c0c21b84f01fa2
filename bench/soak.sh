#!/usr/bin/env bash
# bench/soak.sh: key_auth under mixed traffic for DURATION seconds while the
# consumers and the config reload every second; checks that nothing breaks
# and that Caddy's RSS and goroutines do not grow.
#
# One Caddy (pinned to CADDY_CPU) serves, on 127.0.0.1:
#   18501  key_auth, consumers file (refresh 1s) + reverse_proxy to the upstream
#   18502  the same with `anonymous guest`
#   18503  the same with `key_in_body true` and `hide_credentials`
#   18504  key_auth, HTTP source (refresh 2s) + reverse_proxy to the upstream
#   18505  respond, no key_auth: a control for what Caddy itself does
#   18519  the admin endpoint
# The upstream is a second Caddy (18509, on LOAD_CPU, never reloaded) that
# answers with the identity headers, URI and body it received. Access logs
# are off. The load driver (bench/cmd/soak, on LOAD_CPU) writes the
# consumers file, serves the HTTP source (18510), and for DURATION seconds:
#   - has vegeta send RATE requests/s (at most CONCURRENCY in flight): valid header and
#     query keys, keys that only one of two consumer sets has, invalid keys,
#     no key, anonymous traffic, JSON and form body keys, the HTTP source,
#     and the control site; every answer is checked against the consumer
#     set live at the time (status, message, identity of the key sent);
#   - reloads every second, in turn: the consumers file rewritten atomically
#     with the other set (the HTTP source switches to its other set too),
#     POST /key_auth/sources/refresh, POST /load of the other of two configs
#     adapted from Caddyfiles that differ in the control site's answer;
#   - samples Caddy's RSS (/proc/<pid>/status), goroutines (the admin's
#     /metrics) and open files just before each /load, a cycle after the
#     previous one (the checks use these), and every SAMPLE seconds.
#
# Fails (exit 1) on a 5xx, a wrong answer, a connection error or timeout
# outside a /load, a failed reload, an error in Caddy's log, or RSS or
# goroutines at the end (median over the last WINDOW s) more than 10% from
# where they settled (median over WINDOW s after WARMUP s). Connection
# errors while a /load is under way are counted and reported, not failed:
# Caddy closes its idle keep-alive connections on every /load, with or
# without key_auth (the control site shows it).
#
# Env: DURATION (180 s; 10 to 1800), RATE (1000 req/s), CONCURRENCY (16),
# CONSUMERS (3000 per source), ROTATING (300 of them), WARMUP (30 s, or
# DURATION/4 under 120 s), WINDOW (30 s, or DURATION/3 under 120 s), SAMPLE
# (2 s; 1 s under 60 s), PROXY_TRANSPORT (explicit, see below), CADDY (a
# prebuilt binary; by default bench/out/caddy, rebuilt with xcaddy when a
# source of the module is newer), CADDY_CPU (0), LOAD_CPU (1).
# Quick run (CI): DURATION=20 bench/soak.sh (about 25 s once Caddy is built).
# Output: the report on stdout; bench/out/soak/ holds summary.txt,
# series.tsv, the Caddyfiles, the adapted configs and the logs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/out"
RUN="$OUT/soak"
DURATION=${DURATION:-180}
RATE=${RATE:-1000}
CONCURRENCY=${CONCURRENCY:-16}
CONSUMERS=${CONSUMERS:-3000}
ROTATING=${ROTATING:-300}
# reverse_proxy's transport. Caddy 2.11.9 never cleans up the transport
# reverse_proxy makes itself when the config has no `transport` block: the
# idle upstream connections of every handler a /load replaces stay open
# until their idle timeout (2 minutes), two goroutines and a file each, so
# the goroutines grow for two minutes whatever key_auth does. A configured
# transport (the default here, PROXY_TRANSPORT=explicit: `transport http {
# keepalive 2m }`, Caddy's default made explicit, since an empty `transport
# http` adapts to no transport at all) is cleaned up with its handler;
# PROXY_TRANSPORT=default shows Caddy's growth.
PROXY_TRANSPORT=${PROXY_TRANSPORT:-explicit}

FILE_PORT=18501 ANON_PORT=18502 BODY_PORT=18503 HTTP_PORT=18504 CONTROL_PORT=18505
UPSTREAM_PORT=18509 SOURCE_PORT=18510 ADMIN_PORT=18519

mkdir -p "$OUT"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION < 10 || DURATION > 1800)); then
	die "DURATION must be a number of seconds from 10 to 1800, got $DURATION"
fi
if ((DURATION >= 120)); then
	WARMUP=${WARMUP:-30} WINDOW=${WINDOW:-30}
else
	WARMUP=${WARMUP:-$((DURATION / 4))} WINDOW=${WINDOW:-$((DURATION / 3))}
fi
[[ $PROXY_TRANSPORT == explicit || $PROXY_TRANSPORT == default ]] ||
	die "PROXY_TRANSPORT must be explicit or default, got $PROXY_TRANSPORT"
if ((DURATION >= 60)); then SAMPLE=${SAMPLE:-2}; else SAMPLE=${SAMPLE:-1}; fi
((WINDOW >= 1 && WARMUP + 2 * WINDOW <= DURATION)) ||
	die "need WINDOW >= 1 and WARMUP + 2 * WINDOW <= DURATION (got WARMUP=$WARMUP WINDOW=$WINDOW)"
ensure_tools

rm -rf "$RUN"
mkdir -p "$RUN"

# bench/out/caddy is reused while no source of the module is newer than it.
caddy_is_current() {
	[[ -x $OUT/caddy ]] || return 1
	local newer
	newer=$(cd "$ROOT" && find . \( -path ./bench -o -path ./.git \) -prune -o \
		\( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) -newer "$OUT/caddy" -print -quit)
	[[ -z $newer ]]
}
if [[ -n ${CADDY:-} ]]; then
	[[ -x $CADDY ]] || die "CADDY=$CADDY is not an executable"
	CADDY=$(cd "$(dirname "$CADDY")" && pwd)/$(basename "$CADDY")
elif caddy_is_current; then
	CADDY="$OUT/caddy"
	log "using $CADDY (newer than the module's sources)"
else
	build_caddy # lib.sh: xcaddy into bench/out/caddy
fi
# list-modules into a variable first: `list-modules | grep -q` under pipefail
# fails now and then (grep exits on the match, list-modules gets SIGPIPE).
modules=$("$CADDY" list-modules 2>/dev/null) || die "$CADDY list-modules failed"
grep -qx 'http.handlers.key_auth' <<<"$modules" || die "$CADDY has no key_auth module"
(cd "$ROOT/bench" && go build -o "$OUT/soak-driver" ./cmd/soak) || die "building bench/cmd/soak failed"

# --- configs -----------------------------------------------------------------
cat >"$RUN/upstream.Caddyfile" <<EOF
# Generated by bench/soak.sh: the upstream, never reloaded.
{
	auto_https off
	admin off
	persist_config off
	default_bind 127.0.0.1
}
http://:$UPSTREAM_PORT {
	respond \`user={header.X-Consumer-Username}
cred={header.X-Credential-Identifier}
anon={header.X-Anonymous-Consumer}
uri={uri}
body={http.request.body}\` 200
}
EOF

# caddyfile N: the Caddy under test; configs 1 and 2 differ only in the
# control site's answer, so a /load of the other one is never a no-op.
caddyfile() {
	local file="consumers file $RUN/consumers.json {
			refresh 1s
		}"
	local proxy="reverse_proxy 127.0.0.1:$UPSTREAM_PORT {
		transport http {
			keepalive 2m
		}
	}"
	[[ $PROXY_TRANSPORT == default ]] && proxy="reverse_proxy 127.0.0.1:$UPSTREAM_PORT"
	cat <<EOF
# Generated by bench/soak.sh (config $1). Access logs are off (no log directive).
{
	auto_https off
	admin 127.0.0.1:$ADMIN_PORT
	persist_config off
	default_bind 127.0.0.1
}
http://:$FILE_PORT {
	key_auth {
		$file
	}
	$proxy
}
http://:$ANON_PORT {
	key_auth {
		anonymous guest
		$file
	}
	$proxy
}
http://:$BODY_PORT {
	key_auth {
		key_in_body true
		hide_credentials
		$file
	}
	$proxy
}
http://:$HTTP_PORT {
	key_auth {
		consumers http http://127.0.0.1:$SOURCE_PORT/consumers.json {
			refresh 2s
			timeout 5s
		}
	}
	$proxy
}
http://:$CONTROL_PORT {
	respond "control cfg=$1" 200
}
EOF
}
for n in 1 2; do
	caddyfile "$n" >"$RUN/soak-$n.Caddyfile"
	"$CADDY" adapt --config "$RUN/soak-$n.Caddyfile" --adapter caddyfile >"$RUN/soak-$n.json" 2>>"$RUN/adapt.log" ||
		{
			cat "$RUN/adapt.log" >&2
			die "caddy adapt refused soak-$n.Caddyfile"
		}
	if [[ $PROXY_TRANSPORT == explicit ]] && ! grep -q '"transport":{' "$RUN/soak-$n.json"; then
		die "soak-$n.json has no reverse_proxy transport: Caddy would not clean it up on a /load"
	fi
done

# --- run ---------------------------------------------------------------------
machine_info >"$RUN/machine.txt"
log "starting the load driver and the upstream (cpu $LOAD_CPU)"
taskset -c "$LOAD_CPU" "$OUT/soak-driver" -dir "$RUN" -pid-file "$RUN/caddy.pid" \
	-load1 "$RUN/soak-1.json" -load2 "$RUN/soak-2.json" -mark1 "control cfg=1" -mark2 "control cfg=2" \
	-duration "${DURATION}s" -rate "$RATE" -concurrency "$CONCURRENCY" \
	-consumers "$CONSUMERS" -rotating "$ROTATING" \
	-warmup "${WARMUP}s" -window "${WINDOW}s" -sample "${SAMPLE}s" \
	-admin "127.0.0.1:$ADMIN_PORT" -source "127.0.0.1:$SOURCE_PORT" \
	-file-site "127.0.0.1:$FILE_PORT" -anon-site "127.0.0.1:$ANON_PORT" -body-site "127.0.0.1:$BODY_PORT" \
	-http-site "127.0.0.1:$HTTP_PORT" -control-site "127.0.0.1:$CONTROL_PORT" \
	>"$RUN/report.txt" 2> >(tee "$RUN/driver.log" >&2) &
DRIVER_PID=$!
PIDS+=("$DRIVER_PID")
wait_http "http://127.0.0.1:$SOURCE_PORT/consumers.json" "$DRIVER_PID" 30 ||
	die "the load driver did not start (see $RUN/driver.log)"

start_caddy "$LOAD_CPU" "$RUN/upstream.Caddyfile" "$RUN/upstream.log"
UP_PID=$CADDY_PID
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$UP_PID" 60 ||
	{
		tail -20 "$RUN/upstream.log" >&2
		die "the upstream did not start (see $RUN/upstream.log)"
	}

log "starting Caddy (cpu $CADDY_CPU) for ${DURATION}s of load at $RATE req/s"
start_caddy "$CADDY_CPU" "$RUN/soak-1.Caddyfile" "$RUN/caddy.log"
echo "$CADDY_PID" >"$RUN/caddy.pid"
wait_http "http://127.0.0.1:$CONTROL_PORT/" "$CADDY_PID" 60 ||
	{
		tail -20 "$RUN/caddy.log" >&2
		die "Caddy did not start (see $RUN/caddy.log)"
	}

rc=0
wait "$DRIVER_PID" || rc=$?
forget_pid "$DRIVER_PID"

{
	cat "$RUN/machine.txt"
	echo
	cat "$RUN/report.txt"
	# Caddy's own log, from start to end: any error fails the run.
	errors=$(grep -c '"level":"error"' "$RUN/caddy.log" || true)
	echo
	echo "errors in Caddy's log: $errors"
	if ((errors > 0)); then
		grep '"level":"error"' "$RUN/caddy.log" | head -10 | cut -c1-400 | sed 's/^/  /'
	fi
} | tee "$RUN/summary.txt"
echo "raw: $RUN/ (summary.txt, series.tsv, caddy.log, the Caddyfiles and adapted configs)"
if ((rc != 0)); then
	die "soak failed (exit $rc)"
fi
if (($(grep -c '"level":"error"' "$RUN/caddy.log" || true) > 0)); then
	die "Caddy logged errors"
fi
log "soak passed"
