#!/usr/bin/env bash
# The pipeline's throughput on a live link with the secure link off and on, side by side: the
# edge simulator streams the shipped echo cine over loopback TCP as fast as credit allows, and
# `dinoedge run` processes every frame (offline policy) with the built-in random-weight
# ViT-S/16. Prints frames/s and the secure link's counters for each. Link-only figures are
# `cargo bench -p dinoedge-tests --bench link_throughput`.
#
#   bash scripts/bench_secure_link.sh [FRAMES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-150}
rounds=${2:-2}
cargo build --release -q -p dinoedge -p dinoedge-edge-sim
bin=target/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/dinoedge" keys new --device bench-0001 --dir "$work/keys" >/dev/null
block=$(ls "$work"/keys/*.keyblock)

# One run; prints "frames/s" from run's summary.
one() {
    local mode=$1 port=$2
    local link=(--link-cleartext) sim=()
    if [ "$mode" = secure ]; then
        link=(--link-keys "$work/keys")
        sim=(--key "$block")
    fi
    "$bin/dinoedge" run --listen "127.0.0.1:$port" "${link[@]}" --policy offline \
        --frames "$frames" --report "$work/$mode-$port.json" >/dev/null 2>"$work/$mode-$port.err" &
    local host=$!
    # The host binds before it prints its first line; wait for the port rather than guess.
    for _ in $(seq 1 300); do
        grep -q "127.0.0.1:$port" "$work/$mode-$port.err" 2>/dev/null && break
        sleep 0.1
    done
    "$bin/dinoedge-edge-sim" --tcp "127.0.0.1:$port" --dicom tests/data/echo_cine.dcm --fps 0 \
        --device-id bench-0001 "${sim[@]}" >/dev/null 2>&1 &
    local edge=$!
    wait "$host" || true
    kill "$edge" 2>/dev/null || true
    wait "$edge" 2>/dev/null || true
    python3 - "$work/$mode-$port.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r.get("security")
extra = "" if s is None else f", handshakes {s['handshakes_accepted']}, forged {s['packets_forged']}, replayed {s['packets_replayed']}"
print(f"{r['frames_processed']} frames, {r['fps']:.2f} frames/s{extra}")
PY
}

port=7400
for round in $(seq 1 "$rounds"); do
    for mode in clear secure; do
        port=$((port + 1))
        printf 'round %s %-6s ' "$round" "$mode"
        one "$mode" "$port"
    done
done
