#!/usr/bin/env bash
# Ingest benchmark: signed Slack app_mention deliveries against Chime (SQLite, and Postgres when
# CHIME_BENCH_POSTGRES_URL is set) and against Slack Bolt for Python (AsyncApp on aiohttp, ack
# only), one after the other in the same run. The server is pinned to one core, the load
# generator to the other.
#
#   bash bench/ingest.sh
#   CHIME_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test bash bench/ingest.sh
#
# Knobs (environment): CHIME_BENCH_CONNECTIONS (32), CHIME_BENCH_DURATION (10 s measured),
# CHIME_BENCH_WARMUP (3 s), CHIME_BENCH_SERVER_CPU (0), CHIME_BENCH_LOAD_CPU (1), CHIME_BENCH_RATE
# (10000: after the flat-out run, the same Chime is measured again paced at this many requests/s;
# 0 skips that),
# CHIME_BENCH_SQLITE_SYNC (normal | full), CHIME_BENCH_ON_LOOKUP_ERROR (allow | deny; allow, as
# the earlier runs had by default), CHIME_BENCH_SKIP_BOLT=1, CHIME_BENCH_CHIME_BIN (another
# chime binary, e.g. an older build, for before/after numbers), CHIME_BENCH_WAIT_QUIET (seconds
# to wait, before starting, for other processes to leave the CPUs idle), CHIME_BENCH_OUT (a JSON file for the
# results; default target/bench/ingest-<time>.json), CHIME_BENCH_KEEP=1 (keep the temp dir with the
# servers' logs and the SQLite database).
#
# Everything listens on and talks to 127.0.0.1 only; the Slack Web API URL is a dead loopback port,
# so Chime's outbound calls fail fast and are retried later, and Bolt never calls out.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CONNECTIONS=${CHIME_BENCH_CONNECTIONS:-32}
DURATION=${CHIME_BENCH_DURATION:-10}
WARMUP=${CHIME_BENCH_WARMUP:-3}
SERVER_CPU=${CHIME_BENCH_SERVER_CPU:-0}
LOAD_CPU=${CHIME_BENCH_LOAD_CPU:-1}
SQLITE_SYNC=${CHIME_BENCH_SQLITE_SYNC:-normal}
RATE=${CHIME_BENCH_RATE:-10000}
ON_LOOKUP_ERROR=${CHIME_BENCH_ON_LOOKUP_ERROR:-allow}
SECRET="bench-signing-secret-$$-$RANDOM"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${CHIME_BENCH_OUT:-$CARGO_TARGET_DIR/bench/ingest-$STAMP.json}
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen
CHIME=${CHIME_BENCH_CHIME_BIN:-$CARGO_TARGET_DIR/release/chime}
VENV=$CARGO_TARGET_DIR/bench-venv

say() { printf '\n== %s\n' "$*" >&2; }

WORK=$(mktemp -d -t chime-bench.XXXXXX)
PIDS=()
PG_DB=""
cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    if [ -n "$PG_DB" ]; then
        psql "$CHIME_BENCH_POSTGRES_URL" -q -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
    fi
    if [ -n "${CHIME_BENCH_KEEP:-}" ]; then
        echo "kept the servers' logs and databases in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_healthy() { # url pid log
    local i
    for i in $(seq 1 150); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "server exited before it was healthy; its log:" >&2
            tail -n 30 "$3" >&2
            exit 1
        fi
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server did not become healthy at $1; its log:" >&2
    tail -n 30 "$3" >&2
    exit 1
}

stop_pid() { # pid: SIGKILL a server started by this script, and reap it
    kill -9 "$1" 2>/dev/null || true
    { wait "$1"; } 2>/dev/null || true
}

# Prints the human line and returns the JSON line in $WORK/<label>.json.
run_load() { # label url server_pid [extra loadgen args]
    local label=$1 url=$2 pid=$3
    shift 3
    taskset -c "$LOAD_CPU" "$LOADGEN" --url "$url" --secret "$SECRET" --connections "$CONNECTIONS" \
        --warmup "$WARMUP" --duration "$DURATION" --label "$label" --server-pid "$pid" "$@" \
        >"$WORK/$label.out"
    grep -v '^{' "$WORK/$label.out" >&2
    grep '^{' "$WORK/$label.out" | tail -n 1 >"$WORK/$label.json"
}

json_field() { # file field
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# ---------------------------------------------------------------------------------------------
say "build (release)"
cargo build --release --bin chime --example loadgen >&2

if [ -z "${CHIME_BENCH_SKIP_BOLT:-}" ]; then
    say "python venv for Bolt ($VENV)"
    stamp="$VENV/.requirements-$(sha256sum bench/requirements.txt | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q -r bench/requirements.txt >&2
        touch "$stamp"
    fi
    "$VENV/bin/python" -c 'import slack_bolt, aiohttp; print("slack-bolt", slack_bolt.version.__version__, "aiohttp", aiohttp.__version__)' >&2
fi

say "machine"
echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" >&2
echo "chime binary: $CHIME" >&2
echo "server on CPU $SERVER_CPU, load generator on CPU $LOAD_CPU, c=$CONNECTIONS, warmup ${WARMUP}s, measure ${DURATION}s" >&2
cpu_busy() { # percent of the machine busy over one second
    python3 - <<'EOF'
import time
def snap():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]
t0, i0 = snap(); time.sleep(1); t1, i1 = snap()
print(round(100 * (1 - (i1 - i0) / max(1, t1 - t0))))
EOF
}
busy=$(cpu_busy)
deadline=$((SECONDS + ${CHIME_BENCH_WAIT_QUIET:-0}))
while [ "$busy" -gt 5 ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 4
    busy=$(cpu_busy)
done
echo "background CPU use before the run: ${busy}% of the machine (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
if [ "$busy" -gt 10 ]; then
    echo "WARNING: other processes are using the CPUs; the numbers below will be low and noisy." >&2
    ps -eo pcpu,comm --sort=-pcpu | sed -n 2,6p >&2
fi

# Before each server: flush dirty pages (the previous run's database files, or anyone else's) so
# that kernel writeback does not land in the next measurement, then wait (briefly) for idle CPUs.
settle() {
    sync
    local t=$((SECONDS + ${CHIME_BENCH_SETTLE:-20})) b
    b=$(cpu_busy)
    while [ "$b" -gt 5 ] && [ "$SECONDS" -lt "$t" ]; do
        sleep 1
        b=$(cpu_busy)
    done
    echo "(machine ${b}% busy before this run)" >&2
}

LABELS=()

# ---------------------------------------------------------------------------------------------
say "load generator ceiling: a trivial HTTP server that answers 200 (CPU $SERVER_CPU)"
settle
port=$(free_port)
taskset -c "$SERVER_CPU" "$LOADGEN" --serve "127.0.0.1:$port" 2>"$WORK/trivial.log" &
pid=$!; PIDS+=("$pid")
for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    sleep 0.1
done
run_load trivial "http://127.0.0.1:$port/slack/events" "$pid"
stop_pid "$pid"
LABELS+=(trivial)

if [ -z "${CHIME_BENCH_SKIP_BOLT:-}" ]; then
    say "Bolt for Python (AsyncApp, aiohttp, ack only) on CPU $SERVER_CPU"
    settle
    port=$(free_port)
    taskset -c "$SERVER_CPU" "$VENV/bin/python" bench/bolt_app.py --port "$port" --secret "$SECRET" \
        >"$WORK/bolt.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_healthy "http://127.0.0.1:$port/healthz" "$pid" "$WORK/bolt.log"
    run_load bolt-python "http://127.0.0.1:$port/slack/events" "$pid"
    stop_pid "$pid"
    LABELS+=(bolt-python)
fi

# ---------------------------------------------------------------------------------------------
# Runs Chime against DATABASE_URL=$1 as label $2, then SIGKILLs it and leaves the label's
# 2xx count (warmup included) in $WORK/$2.acks.
bench_chime() { # database_url label
    local url=$1 label=$2 port pid
    settle
    port=$(free_port)
    local conf="$WORK/$label.toml"
    # The loadgen's events come from workspace T1. Naming it keeps Chime from waiting for auth.test
    # (a dead port here) before admitting any event; on_lookup_error is pinned so that builds with
    # different defaults do the same worker work (the dead users.info fails every lookup).
    printf '[database]\nsqlite_synchronous = "%s"\n[slack]\nallowed_workspaces = ["T1"]\non_lookup_error = "%s"\n' \
        "$SQLITE_SYNC" "$ON_LOOKUP_ERROR" >"$conf"
    CHIME_CONFIG="$conf" DATABASE_URL="$url" CHIME_LISTEN="127.0.0.1:$port" \
        SLACK_SIGNING_SECRET="$SECRET" SLACK_BOT_TOKEN=xoxb-bench SLACK_API_URL=http://127.0.0.1:9 \
        taskset -c "$SERVER_CPU" "$CHIME" serve >"$WORK/$label.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_healthy "http://127.0.0.1:$port/healthz" "$pid" "$WORK/$label.log"
    run_load "$label" "http://127.0.0.1:$port/slack/events" "$pid"
    local acks
    acks=$(json_field "$WORK/$label.json" ok_2xx_total)
    if [ "$RATE" != 0 ]; then
        # The same server, paced at the target rate instead of flat out.
        run_load "$label-paced" "http://127.0.0.1:$port/slack/events" "$pid" --rate "$RATE"
        acks=$((acks + $(json_field "$WORK/$label-paced.json" ok_2xx_total)))
        LABELS+=("$label-paced")
    fi
    # Every 2xx must be a committed row, even if the process dies right after the ack.
    stop_pid "$pid"
    echo "$acks" >"$WORK/$label.acks"
}

DURABILITY_OK=1
check_rows() { # label rows
    local acks
    acks=$(cat "$WORK/$1.acks")
    if [ "$2" = "$acks" ]; then
        echo "durability ($1): $2 inbox rows after SIGKILL = $acks 2xx acks: OK" >&2
    else
        echo "durability ($1): $2 inbox rows after SIGKILL != $acks 2xx acks: FAILED" >&2
        DURABILITY_OK=0
    fi
    echo "$2" >"$WORK/$1.rows"
}

say "Chime, SQLite (synchronous=$SQLITE_SYNC) on CPU $SERVER_CPU"
mkdir -p "$WORK/sqlite"
bench_chime "sqlite://$WORK/sqlite/chime.db" chime-sqlite
# Measured before anything opens the database again: the last connection to close removes the WAL.
wal=$(stat -c %s "$WORK/sqlite/chime.db-wal" 2>/dev/null || echo 0)
echo "(WAL file after the run: $((wal / 1048576)) MiB; database file: $(($(stat -c %s "$WORK/sqlite/chime.db") / 1048576)) MiB)" >&2
echo "$((wal / 1048576))" >"$WORK/chime-sqlite.wal_mib"
if command -v sqlite3 >/dev/null; then
    rows=$(sqlite3 "$WORK/sqlite/chime.db" 'SELECT COUNT(*) FROM inbox')
else
    rows=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM inbox").fetchone()[0])' "$WORK/sqlite/chime.db")
fi
check_rows chime-sqlite "$rows"
tasks=$(sqlite3 "$WORK/sqlite/chime.db" 'SELECT COUNT(*) FROM tasks' 2>/dev/null || echo "?")
echo "(the inbox worker made $tasks tasks from those events during the run, in the same process)" >&2
echo "$tasks" >"$WORK/chime-sqlite.tasks"
LABELS+=(chime-sqlite)

if [ -n "${CHIME_BENCH_POSTGRES_URL:-}" ]; then
    say "Chime, Postgres on CPU $SERVER_CPU (the Postgres server itself is not pinned)"
    PG_DB="chime_bench_$(date +%s)_$$"
    psql "$CHIME_BENCH_POSTGRES_URL" -q -c "CREATE DATABASE $PG_DB" >/dev/null
    pg_url="${CHIME_BENCH_POSTGRES_URL%/*}/$PG_DB"
    bench_chime "$pg_url" chime-postgres
    rows=$(psql "$pg_url" -Atc 'SELECT COUNT(*) FROM inbox')
    check_rows chime-postgres "$rows"
    psql "$pg_url" -Atc 'SELECT COUNT(*) FROM tasks' >"$WORK/chime-postgres.tasks"
    LABELS+=(chime-postgres)
fi

# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
say "summary"
mkdir -p "$(dirname "$OUT")"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || COMMIT="$COMMIT+dirty"
python3 - "$WORK" "$OUT" "$STAMP" "$SQLITE_SYNC" "$RATE" "$CHIME" "$COMMIT" "${LABELS[@]}" <<'EOF'
import json, os, sys
work, out, stamp, sync, rate, chime, commit = sys.argv[1:8]
labels = sys.argv[8:]
order = ["chime-sqlite", "chime-sqlite-paced", "chime-postgres", "chime-postgres-paced", "bolt-python", "trivial"]
labels = sorted(labels, key=lambda l: order.index(l) if l in order else len(order))
runs = {}
for label in labels:
    r = json.load(open(os.path.join(work, label + ".json")))
    for extra in ("rows", "tasks", "wal_mib"):
        p = os.path.join(work, f"{label}.{extra}")
        if os.path.exists(p):
            r[extra] = open(p).read().strip()
    runs[label] = r
bolt = runs.get("bolt-python")
names = {
    "trivial": "trivial 200 server (generator ceiling)",
    "chime-sqlite": f"Chime, SQLite (synchronous={sync})",
    "chime-sqlite-paced": f"Chime, SQLite, paced at {rate}/s",
    "chime-postgres": "Chime, Postgres",
    "chime-postgres-paced": f"Chime, Postgres, paced at {rate}/s",
    "bolt-python": "Bolt for Python (ack only)",
}
print()
print("| server | acks/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | server CPU | loadgen CPU | other CPU | vs Bolt |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, r in runs.items():
    flat_out = r.get("rate") is None
    ratio = f"{r['acks_per_s'] / bolt['acks_per_s']:.1f}x" if bolt and label != "bolt-python" and flat_out else "-"
    pct = lambda v: f"{100 * v:.0f}%" if v is not None else "?"
    server_cpu, other_cpu = pct(r.get("server_cpu")), pct(r.get("other_cpu"))
    print(f"| {names.get(label, label)} | {r['acks_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
          f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['non_2xx'] + r['errors']} | {server_cpu} | "
          f"{100 * r['loadgen_cpu']:.0f}% | {other_cpu} | {ratio} |")
print("(CPU columns are % of one core over the measured window; 'other' is everything else on the")
print(" machine: kernel writeback of the server's files, Postgres, or unrelated jobs. A large value")
print(" with a low server CPU means the run was disturbed.)")
print()
for label in ("chime-sqlite", "chime-postgres"):
    r = runs.get(label)
    if not r:
        continue
    print(f"{label}: {r.get('rows')} inbox rows after SIGKILL for {r['ok_2xx_total'] + runs.get(label + '-paced', {}).get('ok_2xx_total', 0)} "
          f"2xx acks (warmup included); {r.get('tasks')} tasks made by the in-process worker during the run"
          + (f"; WAL file {r['wal_mib']} MiB at the end" if "wal_mib" in r else ""))
r = runs.get("chime-sqlite")
if r:
    ok = r["acks_per_s"] >= 10_000 and r["p99_ms"] < 5.0 and r["non_2xx"] == 0 and r["errors"] == 0
    print(f"target (SQLite, c={r['connections']}, flat out: >= 10,000 acks/s with p99 < 5 ms, no non-2xx): "
          f"{'MET' if ok else 'NOT MET'} ({r['acks_per_s']:,.0f}/s, p99 {r['p99_ms']:.2f} ms)")
p = runs.get("chime-sqlite-paced")
if p:
    ok = p["acks_per_s"] >= 0.98 * float(rate) and p["p99_ms"] < 5.0 and p["non_2xx"] == 0 and p["errors"] == 0
    print(f"target (SQLite, c={p['connections']}, paced at {rate}/s: p99 < 5 ms): "
          f"{'MET' if ok else 'NOT MET'} ({p['acks_per_s']:,.0f}/s, p99 {p['p99_ms']:.2f} ms)")
json.dump({"stamp": stamp, "chime_binary": chime, "commit": commit, "sqlite_synchronous": sync,
           "runs": runs}, open(out, "w"), indent=1)
print(f"results: {out}")
EOF

if [ "$DURABILITY_OK" != 1 ]; then
    echo "durability check FAILED: some acknowledged events are not in the inbox" >&2
    exit 1
fi
