#!/usr/bin/env bash
# What the live view costs the pipeline: `dinoedge bench` on the shipped echo cine, looped
# for SECONDS (offline policy, the built-in random-weight ViT-S/16 and demonstration heads),
# without the view, then with it and VIEWERS viewers that each read the event stream and
# fetch every new frame JPEG, like a browser. Prints frames/s for each and the difference.
# The viewers run at the lowest priority (nice 19): in use they are browsers on other machines,
# and on this one they would otherwise take the pipeline's cores; what stays measured is what
# the view costs dinoedge itself (encoding, serving, the event streams).
#
#   bash scripts/bench_view.sh [SECONDS] [VIEWERS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
viewers=${2:-10}
rounds=${3:-2}
cargo build --release -q -p dinoedge
bin=target/release/dinoedge
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A viewer: reads the event stream and fetches each new frame, as the page does.
cat > "$work/viewer.py" <<'PY'
import http.client, json, sys
host, port = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection(host, port)
conn.request("GET", "/events")
stream = conn.getresponse()
last, frames = None, 0
for raw in stream:
    line = raw.decode().strip()
    if not line.startswith("data: "):
        continue
    jpeg = json.loads(line[6:]).get("jpeg")
    if jpeg and jpeg != last:
        last = jpeg
        c = http.client.HTTPConnection(host, port)
        c.request("GET", jpeg)
        frames += len(c.getresponse().read()) > 0
        c.close()
PY

fps() { python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["fps"])' "$1"; }
# dinoedge's own CPU per processed frame, ms: what the view adds to it is its cost wherever the
# viewers run.
cpu_ms() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.1f" % (r["cpu_cores_busy"]*r["elapsed_s"]/max(r["frames_processed"],1)*1000))' "$1"
}

port=7600
for round in $(seq 1 "$rounds"); do
    "$bin" bench --loop-for "$seconds" --out "$work/plain-$round" >/dev/null 2>&1
    plain=$(fps "$work/plain-$round/report.json")
    port=$((port + 1))
    "$bin" bench --loop-for "$seconds" --out "$work/view-$round" --http "127.0.0.1:$port" \
        >/dev/null 2>"$work/view-$round.err" &
    bench=$!
    for _ in $(seq 1 300); do
        grep -q "view at" "$work/view-$round.err" 2>/dev/null && break
        sleep 0.1
    done
    for _ in $(seq 1 "$viewers"); do
        nice -n 19 python3 "$work/viewer.py" 127.0.0.1 "$port" >/dev/null 2>&1 &
    done
    wait "$bench"
    with=$(fps "$work/view-$round/report.json")
    plain_cpu=$(cpu_ms "$work/plain-$round/report.json")
    with_cpu=$(cpu_ms "$work/view-$round/report.json")
    python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:5]); print(f'round $round: without the view {a:.2f} frames/s, {c:.1f} CPU ms/frame; with it and $viewers viewers {b:.2f} frames/s ({(b/a-1)*100:+.1f} %), {d:.1f} CPU ms/frame ({(d/c-1)*100:+.1f} %)')" "$plain" "$with" "$plain_cpu" "$with_cpu"
done
