# shellcheck shell=bash disable=SC2034 # the variables set here are used by the scripts
# Shared by the bench/*.sh scripts; sourced, not run.
# Expects: set -euo pipefail, ROOT (the repository) and OUT (bench/out).

CADDY_CPU=${CADDY_CPU:-0} # the core Caddy is pinned to
LOAD_CPU=${LOAD_CPU:-1}   # the core the load generator is pinned to
CLK_TCK=$(getconf CLK_TCK)

# Caddy keeps its data and config under bench/out, not under $HOME.
export XDG_DATA_HOME="$OUT/xdg/data" XDG_CONFIG_HOME="$OUT/xdg/config"

PIDS=()

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# cleanup stops every process this script started, by pid.
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		# Caddy stops gracefully on SIGTERM; give it a few seconds.
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
}

# stop_pid stops one process this script started.
stop_pid() {
	local pid=$1
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

# forget_pid PID: a process this script started has ended and been waited for.
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# ensure_tools checks for what the scripts need besides Go and says what is
# missing; it installs nothing (.ci/run does, on a bare machine).
ensure_tools() {
	local t missing=()
	for t in go curl taskset getconf; do
		command -v "$t" >/dev/null || missing+=("$t")
	done
	((${#missing[@]} == 0)) ||
		die "missing: ${missing[*]} (on Debian or Ubuntu: apt-get install curl util-linux libc-bin)"
	[[ $(nproc) -ge 2 ]] || log "warning: fewer than 2 cores; Caddy and the load generator will share one"
}

# build_caddy builds Caddy with the module into $OUT/caddy, unless CADDY names
# a binary to use instead. It sets CADDY.
build_caddy() {
	if [[ -n ${CADDY:-} ]]; then
		[[ -x $CADDY ]] || die "CADDY=$CADDY is not an executable"
		log "using $CADDY"
	else
		log "building Caddy v2.11.9 with the module (xcaddy)"
		local tmp="$OUT/caddy.build.$$"
		rm -f "$OUT"/caddy.build.* # left by an interrupted build
		(cd "$ROOT" && go tool xcaddy build v2.11.9 \
			--with github.com/keyauth/caddy-keyauth@v0.0.0=. --output "$tmp") >"$OUT/build.log" 2>&1 ||
			{
				tail -20 "$OUT/build.log" >&2
				die "xcaddy build failed (see $OUT/build.log)"
			}
		mv -f "$tmp" "$OUT/caddy"
		CADDY="$OUT/caddy"
	fi
	# The list is captured first: grep -q exiting early would give
	# list-modules a SIGPIPE, which pipefail turns into a failure.
	local modules
	modules=$("$CADDY" list-modules 2>/dev/null) || die "$CADDY list-modules failed"
	grep -qx 'http.handlers.key_auth' <<<"$modules" || die "$CADDY has no key_auth module"
	CADDY=$(cd "$(dirname "$CADDY")" && pwd)/$(basename "$CADDY")
}

# build_tools builds bench/cmd/benchtool and the load generator, vegeta at the
# version bench/go.mod pins as a Go tool, into $OUT.
build_tools() {
	(cd "$ROOT/bench" && go build -o "$OUT/benchtool" ./cmd/benchtool &&
		go build -o "$OUT/vegeta" github.com/tsenart/vegeta/v12) || die "building benchtool and vegeta failed"
	BENCHTOOL="$OUT/benchtool"
	VEGETA="$OUT/vegeta"
}

# start_caddy CPU CONFIG LOGFILE: starts Caddy pinned to CPU; sets CADDY_PID.
start_caddy() {
	local cpu=$1 cfg=$2 logf=$3
	taskset -c "$cpu" "$CADDY" run --config "$cfg" --adapter caddyfile >"$logf" 2>&1 &
	CADDY_PID=$!
	PIDS+=("$CADDY_PID")
}

# wait_http URL PID [TIMEOUT_S] [HEADER]: waits until URL answers 200 while PID
# lives.
wait_http() {
	local url=$1 pid=$2 timeout=${3:-60} hdr=${4:-X-Bench: 1} i
	for ((i = 0; i < timeout * 20; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		[[ $(curl -s -o /dev/null -w '%{http_code}' -H "$hdr" "$url" 2>/dev/null) == 200 ]] && return 0
		sleep 0.05
	done
	return 1
}

# ticks PID: user+system CPU time of the process so far, in clock ticks.
ticks() {
	# The fields after the command name: state is $1, utime $12, stime $13.
	sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# kib PID FIELD: a VmRSS/VmHWM-style field of /proc/PID/status, in KiB.
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# reset_hwm PID: resets the process's peak RSS (VmHWM) to its current RSS.
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null; }

# median: the median of the numbers on stdin.
median() {
	sort -g | awk '{a[NR] = $1} END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# attack OUTFILE SECONDS TARGETS [VEGETA ATTACK FLAGS...]: CONCURRENCY
# keep-alive connections, each sending its next request as soon as the last
# is answered, for SECONDS; vegeta pinned to LOAD_CPU, keeping no bodies.
# TARGETS is a file of vegeta's http format, or stdin. OUTFILE gets vegeta's
# JSON report.
attack() {
	local outf=$1 secs=$2 targets=$3
	shift 3
	taskset -c "$LOAD_CPU" "$VEGETA" attack -rate=0 -workers="$CONCURRENCY" -max-workers="$CONCURRENCY" \
		-connections="$CONCURRENCY" -duration="${secs}s" -timeout=10s -max-body=0 -targets="$targets" "$@" >"$outf.bin" ||
		die "vegeta attack failed"
	"$VEGETA" report -type=json "$outf.bin" >"$outf" || die "vegeta report failed"
	rm -f "$outf.bin"
}

# vfield REPORT requests|rps|p99ms|status CODE|failed: a figure of vegeta's
# JSON report; failed counts the answers outside 2xx-3xx and the errors.
vfield() {
	local f=$1
	case $2 in
	requests) grep -o '"requests":[0-9]*' "$f" | cut -d: -f2 ;;
	rps) grep -o '"rate":[0-9.e+-]*' "$f" | awk -F: '{printf "%.0f\n", $2}' ;;
	p99ms) grep -o '"99th":[0-9]*' "$f" | awk -F: '{printf "%.2f\n", $2 / 1e6}' ;;
	status | failed)
		grep -o '"status_codes":{[^}]*}' "$f" | grep -o '"[0-9]*":[0-9]*' | tr -d '"' |
			awk -F: -v what="$2" -v c="${3:-}" '
				what == "status" && $1 == c {n += $2}
				what == "failed" && ($1 < 200 || $1 >= 400) {n += $2}
				END {print n + 0}' ;;
	esac
}

# machine_info prints what the figures came from.
machine_info() {
	local model
	model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
	echo "machine: $(nproc) cores (${model:-unknown cpu}), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "caddy: $("$CADDY" version | cut -d' ' -f1), $(go version | cut -d' ' -f3); caddy on cpu $CADDY_CPU, load generator on cpu $LOAD_CPU"
}

# free_port FROM TO: the first port in FROM..TO that nothing on 127.0.0.1
# listens on.
free_port() {
	local p
	for ((p = $1; p <= $2; p++)); do
		(: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
			echo "$p"
			return 0
		}
	done
	die "no free port in $1-$2"
}

# start_redis CPU DIR: starts a redis-server pinned to CPU on a free port of
# 127.0.0.1, its files in DIR, without persistence; sets REDIS_PORT and
# REDIS_PID.
start_redis() {
	local cpu=$1 dir=$2 i
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
		die "redis-server and redis-cli are missing (apt-get install redis-server)"
	mkdir -p "$dir"
	REDIS_PORT=$(free_port 18600 18699)
	taskset -c "$cpu" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
		--save '' --appendonly no --protected-mode yes >"$dir/redis.log" 2>&1 &
	REDIS_PID=$!
	PIDS+=("$REDIS_PID")
	for ((i = 0; i < 200; i++)); do
		[[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
		kill -0 "$REDIS_PID" 2>/dev/null || break
		sleep 0.05
	done
	tail -5 "$dir/redis.log" >&2
	die "redis-server did not start"
}

# source_field ADMIN_PORT FIELD: a number from GET /key_auth/sources (the
# first source that has it), e.g. cache_entries or misses.
source_field() {
	curl -s "http://127.0.0.1:$1/key_auth/sources" | grep -o "\"$2\":[0-9]*" | head -1 | cut -d: -f2
}
