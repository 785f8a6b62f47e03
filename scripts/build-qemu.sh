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

want="${flags[*]}"
if [ ! -f "$obj/build.ninja" ] ||
    [ "$(cat "$obj/.passthru-flags" 2>/dev/null)" != "$want" ]; then
    say "configuring QEMU in $obj (log: $build/configure$sfx.log)"
    rm -rf "$obj"
    mkdir -p "$obj"
    if ! (cd "$obj" && "$src/configure" "${flags[@]}") \
        >"$build/configure$sfx.log" 2>&1; then
        tail -n 20 "$build/configure$sfx.log" >&2
        echo "build$sfx: error: configure failed," \
             "see $build/configure$sfx.log" >&2
        exit 1
    fi
    echo "$want" >"$obj/.passthru-flags"
fi

targets=(qemu-system-x86_64)
for t in "$top"/tests/qtest/*-test.c; do
    [ -f "$t" ] && targets+=("tests/qtest/$(basename "$t" .c)")
done
# upstream's own qtests that make check runs too (tests/upstream-qtests)
for t in $(sed 's/#.*//' "$top/tests/upstream-qtests" | awk 'NF { print $1 }'); do
    targets+=("tests/qtest/$t")
done

say "ninja ${targets[*]} (log: $build/ninja$sfx.log)"
start=$(date +%s)
set +e
# Show every 250th step, so a long build shows life without a wall of text.
ninja -C "$obj" "${targets[@]}" 2>&1 | tee "$build/ninja$sfx.log" |
    awk -v sfx="$sfx" -F'[][/]' '/^\[[0-9]+\/[0-9]+\]/ {
        if ($2 % 250 == 0 || $2 == $3)
            printf "build%s:   step %s of %s\n", sfx, $2, $3; fflush(); next }
        { print; fflush() }'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
    echo "build$sfx: error: ninja failed, see $build/ninja$sfx.log" >&2
    exit 1
fi
say "done in $(( $(date +%s) - start ))s"

# A binary run from the build tree looks for its firmware path inside
# qemu-bundle/: link Debian's firmware folders there.
for d in $firmware_dirs; do
    if [ -d "$d" ] && [ ! -e "$obj/qemu-bundle$d" ]; then
        mkdir -p "$(dirname "$obj/qemu-bundle$d")"
        ln -sfn "$d" "$obj/qemu-bundle$d"
    fi
done
