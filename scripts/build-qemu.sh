#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Configure (once, or again when the flags change) and build the fork:
# qemu-system-x86_64, the project's qtests and the upstream qtests listed
# in tests/upstream-qtests, in BUILD_DIR/qemu-build.
# ninja rebuilds only what changed; ccache makes a rebuild from scratch
# cheap when the compiler has seen the same sources before.
#
# Usage: scripts/build-qemu.sh [--san]
#
# --san builds the same targets with AddressSanitizer (LeakSanitizer
# included) and UndefinedBehaviorSanitizer in BUILD_DIR/qemu-build-san:
# gcc, the same flags plus --enable-asan --enable-ubsan, and UBSan made
# fatal (-fno-sanitize-recover) so that a report fails the test that
# triggers it.  scripts/run-tests.sh runs the project's qtests with it.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(mkdir -p "${BUILD_DIR:-$top/build}" && cd "${BUILD_DIR:-$top/build}" && pwd)
src="$build/qemu"
obj="$build/qemu-build"
sfx=
case "${1:-}" in
    "") ;;
    --san) obj="$build/qemu-build-san"; sfx=-san ;;
    *) echo "usage: $0 [--san]" >&2; exit 2 ;;
esac

# A lean x86_64 system emulator: TCG and KVM, vfio (kernel and vfio-user
# client), the vfio-user server (x-remote machine); no docs, Rust, GUI,
# audio or tools.  Firmware comes from Debian's packages at run time, from
# the folders Debian's own qemu-system-x86 searches on bookworm
# (qemu-system-x86_64 -L help): qemu-system-data's /usr/share/qemu
# (kvmvapic.bin, linuxboot_dma.bin, ...), seabios' /usr/share/seabios
# (bios-256k.bin, vgabios-*.bin) and ipxe-qemu's /usr/lib/ipxe/qemu
# (efi-e1000e.rom, the default NIC's ROM on q35, and every other NIC
# ROM); then OVMF's.  Debian's 10.2 package leaves /usr/lib/ipxe/qemu
# out because trixie's ipxe-qemu also links its ROMs into /usr/share/qemu;
# bookworm's does not.
firmware_dirs="/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu /usr/share/OVMF"
flags=(
    --target-list=x86_64-softmmu
    --python=/usr/bin/python3
    --disable-download
    --enable-tcg --enable-kvm
    --enable-multiprocess --enable-vfio-user-server
    --disable-docs --disable-rust --disable-install-blobs
    --disable-gtk --disable-sdl --disable-opengl --disable-vnc
    --disable-spice --disable-curses --disable-dbus-display
    --disable-virglrenderer --disable-brlapi --disable-xkbcommon
    --audio-drv-list=
    --disable-tools --disable-guest-agent
    --firmwarepath="$(echo $firmware_dirs | tr ' ' :)"
)

if [ -n "$sfx" ]; then
    flags+=(--enable-asan --enable-ubsan
            --extra-cflags=-fno-sanitize-recover=undefined)
fi

# shellcheck source=scripts/qemu-build-lib.sh
. "$top/scripts/qemu-build-lib.sh"

say() { echo "build$sfx: $*"; }

[ -d "$src" ] || { echo "build: error: no upstream tree at $src" >&2; exit 1; }

# QEMU's configure hands the compiler to meson in a cross file, where
# meson does not add ccache by itself: name it as part of the compiler.
export CCACHE_BASEDIR="$build" CCACHE_NOHASHDIR=1
if command -v ccache >/dev/null; then
    flags+=(--cc="ccache cc")
else
    say "warning: ccache not found, builds from scratch will be slow"
fi

qemu_configure "build$sfx" "$obj" "$build/configure$sfx.log" "${flags[@]}"

targets=(qemu-system-x86_64)
for t in "$top"/tests/qtest/*-test.c; do
    [ -f "$t" ] && targets+=("tests/qtest/$(basename "$t" .c)")
done
# upstream's own qtests that make check runs too (tests/upstream-qtests)
for t in $(sed 's/#.*//' "$top/tests/upstream-qtests" | awk 'NF { print $1 }'); do
    targets+=("tests/qtest/$t")
done

qemu_ninja "build$sfx" "$obj" "$build/ninja$sfx.log" "${targets[@]}"
# shellcheck disable=SC2086
qemu_link_firmware "$obj" $firmware_dirs
