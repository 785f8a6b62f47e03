#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Configure (once, or again when the flags change) and build the fork's
# libFuzzer binary, qemu-fuzz-x86_64, in BUILD_DIR/qemu-build-fuzz: clang
# 14 with -fsanitize=fuzzer, AddressSanitizer and UndefinedBehaviorSanitizer.
# Its own build folder, so the normal gcc build is not touched.
#
# No --enable-vfio-user-server here: libvfio-user.so is not instrumented
# and the clang+ASan link fails on it.  The fuzz targets do not need it:
# they carry their own in-process fake vfio-user server
# (tests/qtest/fuzz/nvme-passthru/).

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(mkdir -p "${BUILD_DIR:-$top/build}" && cd "${BUILD_DIR:-$top/build}" && pwd)
src="$build/qemu"
obj="$build/qemu-build-fuzz"
# clang 14 on Debian 12, 19 on Debian 13 (scripts/install-deps.sh)
ver=14
command -v clang-14 >/dev/null || ver=19
cc=${FUZZ_CC:-clang-$ver}
cxx=${FUZZ_CXX:-clang++-$ver}

firmware_dirs="/usr/share/qemu /usr/share/seabios /usr/share/OVMF"
flags=(
    --target-list=x86_64-softmmu
    --python=/usr/bin/python3
    --disable-download
    --enable-fuzzing --enable-asan --enable-ubsan
    --extra-cflags=-fno-sanitize-recover=undefined
    --enable-tcg --disable-kvm
    --disable-docs --disable-rust --disable-install-blobs
    --disable-gtk --disable-sdl --disable-opengl --disable-vnc
    --disable-spice --disable-curses --disable-dbus-display
    --disable-virglrenderer --disable-brlapi --disable-xkbcommon
    --audio-drv-list=
    --disable-tools --disable-guest-agent
    --firmwarepath="$(echo $firmware_dirs | tr ' ' :)"
)

say() { echo "build-fuzz: $*"; }

[ -d "$src" ] || { echo "build-fuzz: error: no upstream tree at $src" >&2; exit 1; }
command -v "$cc" >/dev/null ||
    { echo "build-fuzz: error: $cc not found (scripts/install-deps.sh)" >&2; exit 1; }

export CCACHE_BASEDIR="$build" CCACHE_NOHASHDIR=1
if command -v ccache >/dev/null; then
    flags+=(--cc="ccache $cc" --cxx="ccache $cxx")
else
    flags+=(--cc="$cc" --cxx="$cxx")
fi

want="${flags[*]}"
if [ ! -f "$obj/build.ninja" ] ||
    [ "$(cat "$obj/.passthru-flags" 2>/dev/null)" != "$want" ]; then
    say "configuring QEMU in $obj (log: $build/configure-fuzz.log)"
    rm -rf "$obj"
    mkdir -p "$obj"
    if ! (cd "$obj" && "$src/configure" "${flags[@]}") \
        >"$build/configure-fuzz.log" 2>&1; then
        tail -n 20 "$build/configure-fuzz.log" >&2
        echo "build-fuzz: error: configure failed, see $build/configure-fuzz.log" >&2
        exit 1
    fi
    echo "$want" >"$obj/.passthru-flags"
fi

say "ninja qemu-fuzz-x86_64 (log: $build/ninja-fuzz.log)"
start=$(date +%s)
set +e
ninja -C "$obj" qemu-fuzz-x86_64 2>&1 | tee "$build/ninja-fuzz.log" |
    awk -F'[][/]' '/^\[[0-9]+\/[0-9]+\]/ { if ($2 % 250 == 0 || $2 == $3)
        printf "build-fuzz:   step %s of %s\n", $2, $3; fflush(); next }
        { print; fflush() }'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
    echo "build-fuzz: error: ninja failed, see $build/ninja-fuzz.log" >&2
    exit 1
fi
say "done in $(( $(date +%s) - start ))s"

for d in $firmware_dirs; do
    if [ -d "$d" ] && [ ! -e "$obj/qemu-bundle$d" ]; then
        mkdir -p "$(dirname "$obj/qemu-bundle$d")"
        ln -sfn "$d" "$obj/qemu-bundle$d"
    fi
done
