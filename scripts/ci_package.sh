#!/usr/bin/env bash
# The Debian package in CI: builds the amd64 .deb with cargo-deb (pinned), unpacks it into a
# scratch root and checks it there: the files, the packaged binary and config, lintian (errors
# fail; accepted tags are in packaging/lintian-overrides, each with why), `systemd-analyze
# verify` and an offline `systemd-analyze security` on the unit as installed, and `udevadm
# verify` on the udev rule where udev has it (systemd 253 and newer; bookworm has 252).
#   bash scripts/ci_package.sh            # CI: the dev build the tests made, packaged fast
#   bash scripts/ci_package.sh --release  # the release package, built and checked the same
#   bash scripts/ci_package.sh --arm64    # also an arm64 package (below), built and listed
#
# Why CI packages the dev build: the checks are about the package (files, scripts, unit, rule,
# config), not the code's speed. A cold release build of the host took 13.5 min on the 2-core
# CI machine (81 min while other builds shared it), most of the time this issue may add to CI;
# `cargo deb --profile dev` reuses what `cargo test` built and took 6 s with `--fast`
# compression (74 s with xz's default level), the whole script 30 s.
# cargo-deb 3.8 warns that it may refuse the dev profile in a later version: it is pinned.
#
# The Jetson's package (arm64), without Docker, on Debian or Ubuntu:
#   sudo apt-get install gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
#   rustup target add aarch64-unknown-linux-gnu
#   cargo deb -p dinoedge --target aarch64-unknown-linux-gnu [-F cuda-12060]
# .cargo/config.toml already names aarch64-linux-gnu-gcc as that target's linker; cargo-deb
# strips with aarch64-linux-gnu-strip (binutils-aarch64-linux-gnu). The package lands in
# target/debian/dinoedge_VERSION_arm64.deb. The package says libc6 (>= 2.35), JetPack 6's
# glibc, and this script fails if the binary needs a newer one; the build machine's glibc
# decides that (Debian 12's cross gcc produced a binary that needs 2.35 when this was
# written). If it ever does need more, build in the Ubuntu 22.04 image instead (`cross build
# --release --target aarch64-unknown-linux-gnu -p dinoedge`, see Cross.toml) and package that
# build with `cargo deb -p dinoedge --target aarch64-unknown-linux-gnu --no-build`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exact version: a new cargo-deb may lay out or name the package differently. Raise by hand.
cargo_deb_version="3.8.0"

arm64=""
build=(--profile dev --fast)
for arg in "$@"; do
    case "$arg" in
        --arm64) arm64=1 ;;
        --release) build=() ;;
        *) echo "usage: $0 [--release] [--arm64]" >&2; exit 2 ;;
    esac
done

timer_start=$SECONDS
took() { echo "-- $1: $((SECONDS - timer_start)) s"; timer_start=$SECONDS; }
fail() { echo "ci_package: $*" >&2; exit 1; }
# The newest glibc symbol version the binary $2 needs (objdump $1) must not be newer than the
# libc6 floor the package $3 declares: apt would install it where it cannot start.
check_glibc_floor() {
    local objdump="$1" binary="$2" deb="$3" needs floor
    needs="$("$objdump" -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
    floor="$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')"
    [ -n "$needs" ] && [ -n "$floor" ] || fail "$deb: no glibc version found (needs '$needs', floor '$floor')"
    [ "$(printf '%s\n%s\n' "$needs" "$floor" | sort -V | tail -n 1)" = "$floor" ] ||
        fail "$binary needs glibc $needs, newer than the package's libc6 (>= $floor)"
    echo "glibc: the binary needs $needs, the package says libc6 (>= $floor)"
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=""
apt_install() {
    [ -n "$apt_updated" ] || { $sudo apt-get update; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@"
}

# Built in a throwaway target directory, as scripts/ci_supply_chain.sh does: the tool must
# not land in (or be rebuilt with) the workspace's target/.
if ! cargo install --list | grep -x "cargo-deb v$cargo_deb_version:" >/dev/null; then
    build_dir="$(mktemp -d "${TMPDIR:-/tmp}/dinoedge-install-cargo-deb.XXXXXX")"
    CARGO_TARGET_DIR="$build_dir" cargo install --locked --quiet --version "=$cargo_deb_version" cargo-deb
    rm -rf "$build_dir"
fi
command -v lintian >/dev/null 2>&1 || apt_install lintian
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
# cargo-deb strips the binary with strip; the glibc check reads it with objdump.
command -v objdump >/dev/null 2>&1 || apt_install binutils
took "tools (cargo-deb $cargo_deb_version, lintian, systemd-analyze, binutils)"

# cargo deb's last line on stdout is the package's path.
deb="$(cargo deb -p dinoedge "${build[@]}" | tail -n 1)"
[ -f "$deb" ] || fail "cargo deb did not say where the package is (got: $deb)"
took "cargo deb ${build[*]:-(release)}: $deb, $(du -h "$deb" | cut -f1)"

root="$(mktemp -d "${TMPDIR:-/tmp}/dinoedge-package-root.XXXXXX")"
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"
echo "contents:"
dpkg-deb -c "$deb"
echo "control:"
cat "$root/DEBIAN/control"

for f in usr/bin/dinoedge usr/lib/systemd/system/dinoedge.service etc/dinoedge/dinoedge.toml \
    usr/lib/udev/rules.d/99-dinoedge.rules usr/share/doc/dinoedge/copyright \
    usr/share/doc/dinoedge/changelog.Debian.gz usr/share/lintian/overrides/dinoedge \
    DEBIAN/postinst DEBIAN/postrm DEBIAN/prerm DEBIAN/conffiles; do
    [ -f "$root/$f" ] || fail "the package has no $f"
done
[ -x "$root/usr/bin/dinoedge" ] || fail "usr/bin/dinoedge is not executable"
check_glibc_floor objdump "$root/usr/bin/dinoedge" "$deb"
grep -qx /etc/dinoedge/dinoedge.toml "$root/DEBIAN/conffiles" || fail "the config is not a conffile"
grep -q '^Depends:.*adduser' "$root/DEBIAN/control" || fail "no Depends on adduser (postinst uses it)"
# cargo-deb's systemd snippets went in at #DEBHELPER#, and nothing enables the unit at install.
grep -q 'deb-systemd-helper' "$root/DEBIAN/postinst" || fail "postinst lacks the systemd snippet"
grep -q '#DEBHELPER#' "$root/DEBIAN/postinst" "$root/DEBIAN/postrm" && fail "#DEBHELPER# left unreplaced"
# (debian-installed: the snippet that re-enables only a unit that was enabled before.)
grep -q 'deb-systemd-helper debian-installed' "$root/DEBIAN/postinst" ||
    fail "postinst would enable the unit at install"
grep -q 'deb-systemd-invoke start' "$root/DEBIAN/postinst" && fail "postinst starts the unit at install"
for script in postinst postrm prerm; do
    sh -n "$root/DEBIAN/$script" || fail "$script: syntax"
done
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -s sh "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
fi

# The packaged binary takes the packaged config: it gets past the file (every key and the flag
# it stands for) and stops at the link keys, an empty folder here.
"$root/usr/bin/dinoedge" --version
mkdir -m 0700 "$root/keys"
sed "s|\"/etc/dinoedge/keys\"|\"$root/keys\"|" "$root/etc/dinoedge/dinoedge.toml" >"$root/config.toml"
grep -q "$root/keys" "$root/config.toml" || fail "the packaged config names no /etc/dinoedge/keys"
config_rc=0
"$root/usr/bin/dinoedge" run --config "$root/config.toml" 2>"$root/config.err" || config_rc=$?
grep -q 'is refused' "$root/config.err" && { cat "$root/config.err"; fail "the packaged config is refused"; }
[ "$config_rc" -eq 2 ] && grep -q 'holds no link keys' "$root/config.err" ||
    { cat "$root/config.err"; fail "the packaged config did not stop at the link keys (exit $config_rc)"; }
took "files, maintainer scripts, the binary and its config"

# lintian reads the overrides shipped in the package. Errors fail; warnings are shown.
lintian --fail-on error --display-level '>=warning' --show-overrides --tag-display-limit 0 "$deb"
took "lintian"

# systemd-analyze looks for ExecStart's binary and the targets the unit pulls in under --root:
# the scratch root gets this machine's system units beside the package's (never over them).
cp -a --no-clobber /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
unit=usr/lib/systemd/system/dinoedge.service
# It warns about unknown keys or bad values and still exits 0: any word from it fails.
verify="$(systemd-analyze verify --man=no --root="$root" "$unit" 2>&1)" ||
    { echo "$verify"; fail "systemd-analyze verify failed"; }
[ -z "$verify" ] || { echo "$verify"; fail "systemd-analyze verify: the unit has problems"; }
# Hardening must not slip: the exposure was 3.7 ("OK") with bookworm's systemd 252 when
# written; above 4.0 fails (the threshold counts tenths).
security="$(systemd-analyze security --offline=yes --threshold=40 --no-pager --root="$root" "$unit")" ||
    { echo "$security"; fail "systemd-analyze security: the unit's exposure is above 4.0"; }
echo "$security" | tail -n 1
took "systemd-analyze verify and security"

if udevadm verify --help >/dev/null 2>&1; then
    udevadm verify "$root/usr/lib/udev/rules.d/99-dinoedge.rules"
    took "udevadm verify"
else
    echo "udevadm verify: not available here (udev older than 253, or not installed); rule not checked"
fi

if [ -n "$arm64" ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || apt_install gcc-aarch64-linux-gnu
    command -v aarch64-linux-gnu-strip >/dev/null 2>&1 || apt_install binutils-aarch64-linux-gnu
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
        rustup target add aarch64-unknown-linux-gnu
    arm_deb="$(cargo deb -p dinoedge --target aarch64-unknown-linux-gnu "${build[@]}" | tail -n 1)"
    [ -f "$arm_deb" ] || fail "cargo deb (arm64) did not say where the package is"
    dpkg-deb -I "$arm_deb" | grep -E '^ (Architecture|Depends):'
    dpkg-deb -c "$arm_deb"
    arm_root="$(mktemp -d "${TMPDIR:-/tmp}/dinoedge-package-arm64.XXXXXX")"
    trap 'rm -rf "$root" "$arm_root"' EXIT
    dpkg-deb -x "$arm_deb" "$arm_root"
    check_glibc_floor aarch64-linux-gnu-objdump "$arm_root/usr/bin/dinoedge" "$arm_deb"
    if command -v qemu-aarch64 >/dev/null 2>&1; then
        qemu-aarch64 -L /usr/aarch64-linux-gnu "$arm_root/usr/bin/dinoedge" --version
    fi
    took "cargo deb arm64: $arm_deb"
fi
