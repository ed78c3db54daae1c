#!/usr/bin/env bash
# Prepares what scripts/gpu_check.sh needs on the lent GPU machine, in the ignored folder .gpu/:
# a stripped release binary built with CUDA 13 (the lent GPU's driver 580 and toolkit), and a
# few real frames from ../shared/data (which does not travel). About 25 minutes cold here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p dinoedge --features cuda-13000
mkdir -p .gpu/images
cp target/release/dinoedge .gpu/dinoedge
strip .gpu/dinoedge
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
data=../shared/data
if [ -d "$data" ]; then
    # Grey ultrasound, RGB ultrasound, and 1920-wide endoscopy frames.
    ls "$data"/hc18/training_set/*_HC.png | head -3 | xargs -I{} cp {} .gpu/images/
    ls "$data"/busi/benign/*.png | grep -v mask | head -2 | while read -r f; do
        cp "$f" ".gpu/images/busi-$(basename "$f" | tr -c 'A-Za-z0-9.\n' '_')"
    done
    ls "$data"/endotect/images/* | head -3 | xargs -I{} cp {} .gpu/images/
fi
du -sh .gpu
