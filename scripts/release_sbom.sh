#!/usr/bin/env bash
# The SBOM (CycloneDX JSON) of a release build of the host. Run it after the build, with the
# same --target and --features, and it writes target/[TARGET/]release/dinoedge.cdx.json beside
# the binary, so every release carries the list of what went into it:
#   cargo build --release -p dinoedge --features cuda-12060
#   bash scripts/release_sbom.sh --features cuda-12060
# It builds nothing (the SBOM comes from Cargo.lock and the features); `--out FILE` writes it
# elsewhere and needs no binary (CI).
set -euo pipefail
cd "$(dirname "$0")/.."

out=""
target=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --target) target="$2"; args+=(--target "$2"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "$out" ]; then
    release_dir="${CARGO_TARGET_DIR:-target}/${target:+$target/}release"
    # An SBOM beside no binary would describe a build nobody made.
    if [ ! -x "$release_dir/dinoedge" ]; then
        echo "no $release_dir/dinoedge: build it first (cargo build --release -p dinoedge ...)" >&2
        exit 1
    fi
    out="$release_dir/dinoedge.cdx.json"
fi

# The pinned cargo-cyclonedx, so that a release and CI write the same kind of SBOM.
bash scripts/ci_supply_chain.sh --install-only >/dev/null

# cargo-cyclonedx 0.5 writes a file beside every workspace member's Cargo.toml, with no option
# for one crate or an output folder: a name of this run's own, the host's kept, the rest removed.
name="dinoedge-sbom-$$"
trap 'find . \( -name target -o -name .git \) -prune -o -type f -name "$name.json" -exec rm -f {} +' EXIT
cargo cyclonedx --manifest-path host/Cargo.toml --format json --spec-version 1.5 \
    --override-filename "$name" "${args[@]}"
mkdir -p "$(dirname "$out")"
mv "host/$name.json" "$out"
echo "SBOM: $out"
