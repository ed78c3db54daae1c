#!/usr/bin/env bash
# What the secure link costs the edge's MCU, reproducibly and without the board:
#   1. flash and RAM of the STM32F411 firmware's release build (edge/boards/stm32f411), as CI
#      builds it and with the `bench-seal` benchmark;
#   2. instructions per 4 KiB packet (in the clear and sealed) and per handshake half, counted
#      under QEMU's mps2-an386 Cortex-M4 running the board's own benchmark code
#      (edge/boards/stm32f411/src/bench.rs, compiled with the board's release profile).
#
# The counts are instructions executed in an emulator, not cycles on silicon: at 100 MHz the
# STM32F411 runs from flash with 3 wait states behind the ART accelerator, and multiplies,
# loads and taken branches take more than one cycle, so cycles exceed instructions. For
# cycles, run the board with `cargo run --release --features bench-seal` (DWT cycle counter).
#
# Needs: qemu-system-arm (Debian: apt-get install qemu-system-arm), gcc (for the counting
# plugin), the thumbv7em-none-eabihf target and llvm-tools (rustup component add llvm-tools).
# Not run in CI.
#   bash scripts/mcu_cost.sh            # sizes and instruction counts
#   bash scripts/mcu_cost.sh --no-sizes # instruction counts only
#
# -e/-u/pipefail: any failed build or run must stop the script rather than print numbers from
# an older build.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=1
case "${1:-}" in
    "") ;;
    --no-sizes) sizes=0 ;;
    *) echo "usage: $0 [--no-sizes]" >&2; exit 2 ;;
esac

# Everything this script builds goes under the ignored target/ (the board's own builds stay in
# its target/, where CI puts them).
out="target/mcu_cost"
mkdir -p "$out"

# llvm-size and llvm-nm from rustup's llvm-tools: they read this rustc's objects exactly.
llvm_bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
for tool in llvm-size llvm-nm; do
    if [[ ! -x "$llvm_bin/$tool" ]]; then
        echo "$tool missing: rustup component add llvm-tools" >&2
        exit 2
    fi
done
for tool in qemu-system-arm gcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool missing (Debian: apt-get install $tool)" >&2
        exit 2
    fi
done

if [[ "$sizes" == 1 ]]; then
    echo "== flash and RAM of the STM32F411 firmware (release)"
    board="edge/boards/stm32f411"
    elf="$board/target/thumbv7em-none-eabihf/release/dinoedge-board-stm32f411"
    # Flash holds the vector table, code, constants and .data's initial values; RAM holds
    # .data, .bss and .uninit (the stack comes on top, in what RAM is left).
    report_size() {
        "$llvm_bin/llvm-size" -A "$elf" | awk -v what="$1" '
            $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { flash += $2 }
            $1 == ".data" { flash += $2; ram += $2 }
            $1 == ".bss" || $1 == ".uninit" { ram += $2 }
            END { printf "%-28s flash %7d bytes   static RAM %6d bytes\n", what, flash, ram }'
    }
    (cd "$board" && cargo build --release --quiet)
    report_size "default features"
    (cd "$board" && cargo build --release --quiet --features bench-seal)
    report_size "--features bench-seal"
    # Leave the board's CI build (default features) as the last one in its target directory.
    (cd "$board" && cargo build --release --quiet)
fi

echo "== instructions under QEMU (mps2-an386, Cortex-M4)"
(cd scripts/mcu_cost && cargo build --release --quiet)
elf="$out/thumbv7em-none-eabihf/release/dinoedge-mcu-cost"

# The counting plugin: built here because Debian ships QEMU's plugin support but no plugins.
plugin="$out/libinsn_marks.so"
gcc -shared -fPIC -O2 -Wall -Wextra -o "$plugin" scripts/mcu_cost/insn_marks.c

# The function the program calls around each measurement (its symbol is mangled: match the
# demangled path). awk reads the whole list rather than exiting at the match: an early exit
# would kill llvm-nm with SIGPIPE and fail the pipe under pipefail.
mark="$("$llvm_bin/llvm-nm" -C "$elf" |
    awk '/ dinoedge_mcu_cost::dinoedge_mark/ && !found { print "0x" $1; found = 1 }')"
if [[ -z "$mark" ]]; then
    echo "dinoedge_mark not found in $elf" >&2
    exit 1
fi

# Semihosting carries the program's output (stdout) and its exit status; the plugin writes its
# marks to the log. A stuck program is killed after 5 minutes (a run takes about a second).
spans="$out/spans.txt"
marks="$out/marks.log"
if ! timeout 300 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none \
    -serial none -semihosting-config enable=on,target=native -kernel "$elf" \
    -plugin "$plugin,mark=$mark" -d plugin -D "$marks" >"$spans"; then
    # The program says why (an error or a panic) on its console.
    cat "$spans" >&2
    echo "the benchmark failed under QEMU (or ran past 5 minutes)" >&2
    exit 1
fi

# The n-th "span NAME OPS" line was measured between marks 2n and 2n+1.
awk '
    BEGIN { n_marks = 0; n_spans = 0 }
    FNR == NR && $1 == "mark" { mark[n_marks++] = $2; next }
    FNR != NR && $1 == "span" { name[n_spans] = $2; ops[n_spans] = $3; n_spans++ }
    FNR != NR && $1 == "sizes" { sizes = $0 }
    FNR != NR && ($1 == "error:" || $1 == "panic:") { print; failed = 1 }
    END {
        if (failed) exit 1
        if (n_marks != 2 * n_spans) {
            printf "%d marks for %d spans: the program and the plugin disagree\n", n_marks, n_spans
            exit 1
        }
        for (i = 0; i < n_spans; i++) {
            insns[name[i]] += mark[2 * i + 1] - mark[2 * i]
            runs[name[i]] += ops[i]
        }
        split(sizes, kv, /[ =]/)
        printf "4 KiB FrameChunk (%d bytes of pixels; %d bytes on the wire clear, %d sealed)\n", kv[3], kv[5], kv[7]
        for (s in insns) per[s] = insns[s] / runs[s]
        printf "  clear  (postcard, CRC-32, COBS)          %9.0f instructions per packet (%d runs)\n", per["clear_chunk"], runs["clear_chunk"]
        printf "  sealed (the above and ChaCha20-Poly1305)  %9.0f instructions per packet (%d runs)\n", per["sealed_chunk"], runs["sealed_chunk"]
        printf "  sealing adds                             %9.0f instructions per packet (%.1f per byte of pixels)\n", per["sealed_chunk"] - per["clear_chunk"], (per["sealed_chunk"] - per["clear_chunk"]) / kv[3]
        printf "Handshake, edge side (%d runs)\n", runs["handshake_start"]
        printf "  start  (ephemeral secret, X25519 public key, message 1)  %9.0f instructions\n", per["handshake_start"]
        printf "  finish (X25519 shared secret, message 2, split)          %9.0f instructions\n", per["handshake_finish"]
        printf "  total                                                    %9.0f instructions\n", per["handshake_start"] + per["handshake_finish"]
    }
' "$marks" "$spans"
echo "(instructions executed in QEMU, not cycles: on the STM32F411 at 100 MHz expect more cycles than instructions; the board's bench-seal feature measures cycles)"
