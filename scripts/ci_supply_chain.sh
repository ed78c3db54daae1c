#!/usr/bin/env bash
# The supply chain in CI: `cargo deny` (licences, bans, sources; advisories where the RustSec
# database can be fetched) on this workspace and on the board's own workspace, with deny.toml;
# then the host's SBOM (CycloneDX JSON) in target/sbom/, checked to list its components.
#   bash scripts/ci_supply_chain.sh                 # all of it
#   bash scripts/ci_supply_chain.sh --install-only  # only the pinned tools (release_sbom.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# Exact versions: a new cargo-deny release may add checks or change the config's meaning, and CI
# must not go red on its own. Raise them by hand.
deny_version="0.20.2"
cyclonedx_version="0.5.9"

timer_start=$SECONDS
took() { echo "-- $1: $((SECONDS - timer_start)) s"; timer_start=$SECONDS; }

# Built in a throwaway target directory: the tools must not land in (or be rebuilt with) the
# workspace's target/, and their build objects are of no use once the binaries are installed.
install_tool() {
    local crate="$1" version="$2"
    # grep reads the whole list (no -q): an early exit would fail the pipe under pipefail.
    if cargo install --list | grep -x "$crate v$version:" >/dev/null; then
        echo "$crate $version already installed"
        return
    fi
    local build_dir
    build_dir="$(mktemp -d "${TMPDIR:-/tmp}/dinoedge-install-$crate.XXXXXX")"
    CARGO_TARGET_DIR="$build_dir" cargo install --locked --quiet --version "=$version" "$crate"
    rm -rf "$build_dir"
}
install_tool cargo-deny "$deny_version"
install_tool cargo-cyclonedx "$cyclonedx_version"
took "tools (cargo-deny $deny_version, cargo-cyclonedx $cyclonedx_version)"
if [ "${1:-}" = "--install-only" ]; then exit 0; fi

# The board firmware is its own workspace; the one deny.toml serves both, so an exception for a
# crate that only the other workspace has is expected (exceptions are per crate and grant
# nothing to any other). An allowed licence that nothing uses still warns, for the main one.
workspaces=("Cargo.toml" "edge/boards/stm32f411/Cargo.toml")
deny() { cargo deny --manifest-path "$1" --config deny.toml "${@:2}"; }
for manifest in "${workspaces[@]}"; do
    echo "cargo deny: $manifest"
    allow=(-A license-exception-not-encountered)
    [ "$manifest" = "Cargo.toml" ] || allow+=(-A license-not-encountered)
    # Duplicate versions are warnings; their inclusion graphs would be hundreds of lines.
    deny "$manifest" check --show-stats --hide-inclusion-graph "${allow[@]}" bans
    deny "$manifest" check --show-stats "${allow[@]}" licenses sources
done
took "cargo deny: licences, bans, sources"

# The advisory database is a git clone from GitHub, which no package registry mirrors: where it
# cannot be fetched, say so plainly rather than let a skipped check read as a pass.
if fetch_log="$(timeout 180 cargo deny --config deny.toml fetch db 2>&1)"; then
    for manifest in "${workspaces[@]}"; do
        echo "cargo deny: $manifest"
        deny "$manifest" check --show-stats advisories
    done
    took "cargo deny: advisories"
else
    status=$?
    reason="$(printf '%s\n' "$fetch_log" | sed '/^[[:space:]]*$/d' | tail -n 1)"
    [ "$status" -eq 124 ] && reason="no answer within 180 s"
    echo "advisories NOT checked: the RustSec database cannot be fetched here ($reason)"
    took "cargo deny: advisories (not checked)"
fi

sbom="target/sbom/dinoedge.cdx.json"
bash scripts/release_sbom.sh --out "$sbom"
python3 - "$sbom" <<'EOF'
import json, sys
bom = json.load(open(sys.argv[1]))
main = bom["metadata"]["component"]
components = bom.get("components", [])
# Well over 100 crates go into the host; far fewer means the SBOM lost its dependencies.
if bom.get("bomFormat") != "CycloneDX" or main.get("name") != "dinoedge" or len(components) <= 100:
    sys.exit(f"{sys.argv[1]}: not a full SBOM of dinoedge ({len(components)} components)")
print(f"{sys.argv[1]}: CycloneDX {bom['specVersion']}, {main['name']} {main['version']}, "
      f"{len(components)} components")
EOF
took "SBOM"
