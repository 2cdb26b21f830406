#!/usr/bin/env bash
# CPU the router (or the floor proxy) spends per request, by thread, under the shared bench's load.
#
#   bash bench/cpu_per_request.sh [router|floor] [rounds]
#
# Like ../shared/bench/run.sh, the gateway is pinned to CPU 0 and the mock and wrk to CPU 1, so the
# gateway's own CPU is what limits it; unlike run.sh it reads the gateway's CPU time (utime + stime of
# every thread, from /proc) over each measured load, which varies less between runs than req/s does.
# Env: WARM (s, default 8), DUR (s per round, default 6), MAIN (the router's main.ts, default this
# checkout's; point it at another checkout to compare builds), HI_LOG (default info), STREAM=1.
# Needs wrk, taskset and python3, and ../shared/bench beside the checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
shared="$here/../shared/bench"
target="${1:-router}"
rounds="${2:-1}"
main="${MAIN:-$here/main.ts}"
mock_port=19411
gateway_port=19412
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

setsid taskset -c 1 deno run --allow-net --allow-env "$shared/mock.ts" "$mock_port" >"$work/mock.log" 2>&1 &
pids+=($!)
if [ "$target" = floor ]; then
  GATEWAY_PORT=$gateway_port UPSTREAM_URL=http://127.0.0.1:$mock_port setsid taskset -c 0 \
    deno run --allow-net --allow-env "$shared/floor_proxy.ts" >"$work/gateway.log" 2>&1 &
else
  # The router as main.ts runs it; `deno task serve` adds only its launcher process, which idles.
  HI_LOG="${HI_LOG:-info}" HI_PORT=$gateway_port HI_ARTIFACTS_DIR="$work/artifacts" \
    OLLAMA_HOST=http://127.0.0.1:$mock_port OPENAI_BASE_URL=http://127.0.0.1:$mock_port/v1 \
    OPENAI_API_KEY=sk-bench setsid taskset -c 0 deno run -A "$main" >"$work/gateway.log" 2>&1 &
fi
pids+=($!)
gateway=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$gateway_port/" && break
  sleep 0.1
done

load() {
  STREAM="${STREAM:-0}" taskset -c 1 wrk -t1 -c64 -d"$1"s -s "$shared/post.lua" \
    "http://127.0.0.1:$gateway_port/v1/chat/completions"
}
# Per thread name: CPU ticks (utime + stime) of every thread of the gateway process.
snapshot() {
  for task in /proc/"$gateway"/task/*; do
    echo "$(tr ' ' '_' <"$task/comm") $(awk '{print $14 + $15}' "$task/stat")"
  done
}

load "${WARM:-8}" >/dev/null
for round in $(seq 1 "$rounds"); do
  snapshot >"$work/before"
  result="$(load "${DUR:-6}" | grep RESULT)"
  snapshot >"$work/after"
  python3 - "$work/before" "$work/after" "$result" "$(getconf CLK_TCK)" "$round" <<'PY'
import collections, re, sys
before, after, result, hz, round_ = sys.argv[1:]
requests = int(re.search(r"requests=(\d+)", result).group(1))
rps = re.search(r"rps=([\d.]+)", result).group(1)
def totals(path):
    sums = collections.Counter()
    for line in open(path):
        name, ticks = line.split()
        sums[name] += int(ticks)
    return sums
delta = totals(after)
delta.subtract(totals(before))
per_request = {name: ticks / int(hz) * 1e6 / requests for name, ticks in delta.items() if ticks > 0}
threads = " ".join(f"{name}={us:.1f}" for name, us in sorted(per_request.items(), key=lambda kv: -kv[1]))
print(f"round {round_}: {rps} req/s, {sum(per_request.values()):.1f} us CPU per request ({threads})")
PY
done
