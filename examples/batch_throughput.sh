#!/usr/bin/env bash
# Batch throughput and resume, end to end, on this machine.
#
#   cargo build --release -p biop2p
#   examples/batch_throughput.sh            # 10,000 inputs on 3 local hosts
#   N=2000 examples/batch_throughput.sh     # smaller
#
# Starts three `biop2p host` processes on loopback (temporary data dirs),
# writes N small distinct inputs, and runs
#   biop2p submit builtin:echo --inputs DIR -o OUT --peer A --peer B --peer C --json
# which verifies every receipt and writes every output. It prints the
# batch's own figure (inputs decided per second of wall time) beside the
# baseline of N single `biop2p submit` calls (measured on the first
# BASE=50 inputs and scaled). Then it runs the batch again into a fresh
# state, kills the submitter with SIGKILL at about half way, runs the
# same command once more, and checks that every output is present and
# equal to its input and that the hosts ran N jobs in all (0 run twice).
set -euo pipefail
N=${N:-10000}
BASE=${BASE:-50}
BIN=${BIOP2P:-$(dirname "$0")/../target/release/biop2p}
[ -x "$BIN" ] || BIN=${CARGO_TARGET_DIR:-target}/release/biop2p
[ -x "$BIN" ] || { echo "build first: cargo build --release -p biop2p" >&2; exit 2; }
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

PEERS=()
for i in 0 1 2; do
  "$BIN" host --json --no-mdns --listen /ip4/127.0.0.1/tcp/0 --data-dir "$W/host$i" >"$W/host$i.log" 2>"$W/host$i.err" &
  PIDS+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 100); do grep -q '"listening"' "$W/host$i.log" 2>/dev/null && break; sleep 0.1; done
  addr=$(grep -m1 '"listening"' "$W/host$i.log" | sed 's/.*"addrs":\["\([^"]*\)".*/\1/')
  PEERS+=(--peer "$addr")
done
mkdir -p "$W/in"
for i in $(seq -f %05g 0 $((N - 1))); do echo "input $i $RANDOM" >"$W/in/in-$i.txt"; done

finished() { cat "$W"/host*.log | grep -c '"event":"finished"' || true; }
check() { # outputs equal inputs, in name order
  local a b
  a=$(cd "$W/in" && cat -- * | cksum)
  b=$(cd "$1" && cat -- *.out | cksum)
  [ "$a" = "$b" ] && [ "$(ls "$1" | grep -c '\.out$')" -eq "$N" ]
}

# Baseline: one process per job (discovery skipped: --peer).
t0=$(date +%s.%N)
for f in $(ls "$W/in" | head -n "$BASE"); do
  "$BIN" submit builtin:echo --input "$W/in/$f" "${PEERS[@]:0:2}" --state-dir "$W/base-state" >/dev/null 2>&1
done
t1=$(date +%s.%N)
base=$(echo "$BASE / ($t1 - $t0)" | bc -l)

before=$(finished)
"$BIN" submit builtin:echo --inputs "$W/in" -o "$W/out" "${PEERS[@]}" --state-dir "$W/state" --json >"$W/batch.jsonl"
summary=$(tail -n1 "$W/batch.jsonl")
check "$W/out" || { echo "FAIL: outputs differ from inputs" >&2; exit 1; }
rate=$(echo "$summary" | sed 's/.*"jobs_per_sec":\([0-9.]*\).*/\1/')
printf 'batch: %d inputs on 3 hosts, every receipt verified, every output written and checked\n' "$N"
printf '  batch      %10.1f jobs/s   (%s)\n' "$rate" "$(echo "$summary" | sed 's/.*"wall_secs":\([0-9.]*\).*/\1 s/')"
printf '  baseline   %10.1f jobs/s   (one `biop2p submit` per input, %d inputs)\n' "$base" "$BASE"
echo "  summary: $summary"
ran=$(( $(finished) - before ))
echo "  hosts ran $ran jobs for $N inputs"

# Resume: kill -9 at about half way.
before=$(finished)
"$BIN" submit builtin:echo --inputs "$W/in" -o "$W/out2" "${PEERS[@]}" --state-dir "$W/state2" --json >"$W/half.jsonl" &
SP=$!
lines() { local n; n=$(grep -c '"index"' "$1" 2>/dev/null) || true; echo "${n:-0}"; }
while [ "$(lines "$W/half.jsonl")" -lt $((N / 2)) ]; do
  kill -0 $SP 2>/dev/null || break
  sleep 0.01
done
kill -9 $SP 2>/dev/null || true
wait $SP 2>/dev/null || true
killed_at=$(lines "$W/half.jsonl")
"$BIN" submit builtin:echo --inputs "$W/in" -o "$W/out2" "${PEERS[@]}" --state-dir "$W/state2" --json >"$W/rest.jsonl"
sleep 1
check "$W/out2" || { echo "FAIL: outputs after the resume differ from inputs" >&2; exit 1; }
ran=$(( $(finished) - before ))
echo "resume: killed after $killed_at of $N; the rerun: $(tail -n1 "$W/rest.jsonl")"
echo "resume: every output present and correct; hosts ran $ran jobs for $N inputs ($((ran - N)) run twice)"
[ "$ran" -eq "$N" ]
