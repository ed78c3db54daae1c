#!/usr/bin/env bash
# The Jetson's side of CI, on an x86_64 machine: build dinoedge for aarch64-unknown-linux-gnu with
# Debian's cross gcc, refuse a binary that needs a glibc newer than JetPack 6's (2.35), then run
# under qemu-user, with a CPU like the Jetson Orin's (Cortex-A78AE; qemu's nearest is Cortex-A76),
#   - the protocol crate's tests,
#   - the backbone parity tests against the committed transformers fixtures (tract's arm64
#     kernels, which are not the x86 ones the other tests exercise),
#   - `dinoedge bench` on the shipped echo cine for a few frames (its report must count them).
# tract cannot read the CPU's features under qemu-user (it reads the build machine's
# /proc/cpuinfo) and takes its generic arm64 kernels: still arm64 code, not the x86 one.
#
# One build profile (`aarch64-ci`: the dev profile at opt-level 1) serves the tests and the
# binary: a second, release build of tract would double the time. The glibc ceiling is read off
# that binary; a release build links the same libc functions.
#
# Usage: scripts/ci_aarch64.sh [FRAMES]   (FRAMES: bench frames, default 3)
# Needs root or sudo for apt when the cross toolchain or qemu-user is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
profile=aarch64-ci
glibc_ceiling=2.35
frames=${1:-3}
sysroot=/usr/aarch64-linux-gnu
cpu=cortex-a76

t0=$SECONDS
phase() { printf -- '-- %s (%d s)\n' "$*" "$((SECONDS - t0))"; }

phase "toolchain"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -e "$sysroot/include/stdio.h" ] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
command -v aarch64-linux-gnu-objdump >/dev/null 2>&1 || missing+=(binutils-aarch64-linux-gnu)
if [ "${#missing[@]}" -gt 0 ]; then
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
qemu-aarch64 --version | sed -n 1p

# .cargo/config.toml names the linker; the runner here adds the CPU model.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu -L $sysroot"
export CARGO_INCREMENTAL=0
build=(--target "$target" --profile "$profile")

phase "build (dinoedge, the protocol tests, the host's integration tests)"
cargo build -p dinoedge --bin dinoedge "${build[@]}"
cargo test --no-run -p dinoedge-proto "${build[@]}"
cargo test --no-run -p dinoedge --test integration "${build[@]}"
bin=${CARGO_TARGET_DIR:-target}/$target/$profile/dinoedge
file "$bin" 2>/dev/null || true

phase "glibc ceiling ($glibc_ceiling, JetPack 6)"
needed=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV)
newest=$(printf '%s\n' "$needed" | tail -n 1)
echo "glibc versions the binary needs: $(printf '%s ' $needed)"
if [ "$(printf '%s\n%s\n' "$newest" "$glibc_ceiling" | sort -V | tail -n 1)" != "$glibc_ceiling" ]; then
    echo "FAIL: $bin needs glibc $newest; JetPack 6 has $glibc_ceiling. Symbols:" >&2
    aarch64-linux-gnu-objdump -T "$bin" | grep "GLIBC_$newest" >&2
    exit 1
fi
echo "ok: newest is $newest"

phase "protocol tests under qemu ($cpu)"
cargo test -q -p dinoedge-proto "${build[@]}"

phase "backbone parity under qemu ($cpu)"
cargo test -q -p dinoedge --test integration "${build[@]}" -- backbone_parity::

phase "bench on the echo cine under qemu ($cpu): $frames frames"
# The default ViT-S/16 (random weights) at 112x112, one worker: the real graph on arm64 at a
# quarter of the tokens, since qemu runs tract's generic arm64 kernels at about 20 s a frame at
# 224x224. Stopping the 30-frame cine early counts the rest as lost on the link (HostStopped),
# and bench exits 1 on losses: 0 and 1 both pass, and the report must count the frames.
report_dir=$(mktemp -d)
trap 'rm -rf "$report_dir"' EXIT
bench_rc=0
qemu-aarch64 -cpu "$cpu" -L "$sysroot" "$bin" bench --size 112x112 --workers 1 \
    --frames "$frames" --out "$report_dir" || bench_rc=$?
[ "$bench_rc" -le 1 ] || { echo "FAIL: the aarch64 bench exited $bench_rc" >&2; exit 1; }
python3 - "$report_dir/report.json" "$frames" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
got = report["frames_processed"]
assert got >= want, f"the aarch64 bench processed {got} frames, fewer than {want}"
print(f"aarch64 bench: {got} frames processed under qemu")
PY

phase "done"
