#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Install everything the fork needs to build and test, from Debian packages.
# Idempotent: packages already present are not touched, and apt is only
# called when something is missing.  Supports Debian 12 (bookworm, with
# bookworm-backports for meson >= 1.5 and python3-pycotap) and Debian 13.
#
# Usage: scripts/install-deps.sh [--check]
#   --check   only report what is missing; exit 1 if anything is

set -euo pipefail

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

# Build: compiler, meson/ninja, QEMU's mandatory libraries, the Debian
# source tooling that unpacks the pinned upstream package.
build_pkgs="build-essential ccache pkg-config ninja-build flex bison
    python3 python3-venv python3-setuptools
    libglib2.0-dev libpixman-1-dev libslirp-dev libjson-c-dev libcmocka-dev
    zlib1g-dev libfdt-dev
    dpkg-dev xz-utils rsync patch ca-certificates"
# Backported on bookworm: meson >= 1.5, pycotap, and libvirt 11.3 (the
# libvirt tests and virt-nvme-hotplug; bookworm's own 9.0 works too).
new_pkgs="meson python3-pycotap"
libvirt_pkgs="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    libvirt-dev libxml2-dev"
# Runtime firmware (OVMF; SeaBIOS and its VGA BIOSes; option ROMs such as
# kvmvapic.bin and linuxboot_dma.bin; iPXE's NIC ROMs, efi-e1000e.rom for
# q35's default NIC), the tools that pack the test guest (its packages are
# only downloaded), and matplotlib for the chart of make bench.
run_pkgs="ovmf qemu-system-data seabios ipxe-qemu cpio kmod binutils
    python3-matplotlib"
# The libFuzzer build (scripts/build-fuzz.sh, make fuzz, make check):
# clang and its runtime (libFuzzer, ASan, UBSan).  Debian 12: clang 14,
# as newer clangs have no matching libclang-rt-N-dev there; Debian 13:
# its default, clang 19.
fuzz_pkgs="clang-14 libclang-rt-14-dev"

. /etc/os-release
codename="${VERSION_CODENAME:-}"
[ "$codename" = bookworm ] || fuzz_pkgs="clang-19 libclang-rt-19-dev"

missing_pkgs() {
    local p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
            grep -q '^install ok installed$'; then
            echo "$p"
        fi
    done
}

meson_ok() {
    command -v meson >/dev/null 2>&1 || return 1
    dpkg --compare-versions "$(meson --version 2>/dev/null)" ge 1.5
}

# The first URI that serves the distribution's main suite, from the
# machine's own apt configuration (deb822 .sources or one-line .list).
main_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$codename" '
            BEGIN { RS = ""; FS = "\n" }
            /(^|\n)Types:[^\n]*deb([ \n]|$)/ && $0 ~ ("Suites:[^\n]*" suite "([ \n]|$)") {
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) {
                        sub(/^URIs:[ \t]*/, "", $i); split($i, u, " ");
                        print u[1]; exit
                    }
                }
            }' "$f"
    done | head -n 1
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v suite="$codename" '$1 == "deb" {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit } }' || true
}

all_missing=$(missing_pkgs $build_pkgs $run_pkgs $fuzz_pkgs)
need_new=0
if ! meson_ok || [ -n "$(missing_pkgs python3-pycotap $libvirt_pkgs)" ]; then
    need_new=1
fi

if [ -z "$all_missing" ] && [ $need_new = 0 ]; then
    echo "install-deps: all dependencies present"
    exit 0
fi
if [ $check_only = 1 ]; then
    echo "install-deps: missing:" $all_missing \
        $([ $need_new = 1 ] && echo "meson>=1.5 python3-pycotap" \
            $(missing_pkgs $libvirt_pkgs))
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages and not root: run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts="-y -q --no-install-recommends"
backports=""

if [ "$codename" = bookworm ] && [ $need_new = 1 ]; then
    list=/etc/apt/sources.list.d/passthru-backports.sources
    if [ ! -f "$list" ] &&
        ! grep -rqs 'bookworm-backports' /etc/apt/sources.list \
            /etc/apt/sources.list.d/; then
        mirror=$(main_mirror)
        if [ -z "$mirror" ]; then
            echo "install-deps: cannot find the apt mirror for $codename" \
                 "to derive bookworm-backports from" >&2
            exit 1
        fi
        echo "install-deps: adding bookworm-backports from $mirror"
        cat >"$list" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    backports="-t bookworm-backports"
fi

apt-get update -q
# shellcheck disable=SC2086
apt-get install $apt_opts $all_missing
if [ $need_new = 1 ]; then
    # shellcheck disable=SC2086
    apt-get install $apt_opts $backports $new_pkgs $libvirt_pkgs
fi
meson_ok || { echo "install-deps: meson >= 1.5 not available" >&2; exit 1; }
echo "install-deps: done"
