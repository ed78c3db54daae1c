#!/usr/bin/env bash
# The link, pipeline and recording tests, N times in a row (default 20) while stress-ng keeps
# every core busy: what "they pass under load" means for this project. Needs stress-ng
# (`apt-get install stress-ng`). Prints one line per run and a total; exits 1 if any run failed,
# keeping that run's output in target/stress/.
set -u
cd "$(dirname "$0")/.."
runs=${1:-20}
mkdir -p target/stress
cargo test --no-run -q -p dinoedge --lib --test integration >/dev/null 2>&1
cargo test --no-run -q -p dinoedge-tests >/dev/null 2>&1
stress-ng --cpu "$(nproc)" --timeout 6h >/dev/null 2>&1 &
load=$!
trap 'kill $load 2>/dev/null' EXIT
failed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    log=target/stress/run-$i.log
    # The integration binaries take several name filters; each file is a module of its own.
    if cargo test -q -p dinoedge --lib >"$log" 2>&1 &&
        cargo test -q -p dinoedge --test integration -- pipeline:: recording:: record_crash:: \
            replay_source:: >>"$log" 2>&1 &&
        cargo test -q -p dinoedge-tests --test integration -- link_e2e:: pipeline_live:: \
            live_mask:: cut_link:: >>"$log" 2>&1; then
        echo "run $i ok $(($(date +%s) - start)) s"
        rm -f "$log"
    else
        echo "run $i FAILED $(($(date +%s) - start)) s (see $log)"
        failed=$((failed + 1))
    fi
done
echo "$((runs - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
