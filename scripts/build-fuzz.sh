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

# shellcheck source=scripts/qemu-build-lib.sh
. "$top/scripts/qemu-build-lib.sh"

[ -d "$src" ] || { echo "build-fuzz: error: no upstream tree at $src" >&2; exit 1; }
command -v "$cc" >/dev/null ||
    { echo "build-fuzz: error: $cc not found (scripts/install-deps.sh)" >&2; exit 1; }

export CCACHE_BASEDIR="$build" CCACHE_NOHASHDIR=1
if command -v ccache >/dev/null; then
    flags+=(--cc="ccache $cc" --cxx="ccache $cxx")
else
    flags+=(--cc="$cc" --cxx="$cxx")
fi

qemu_configure build-fuzz "$obj" "$build/configure-fuzz.log" "${flags[@]}"
qemu_ninja build-fuzz "$obj" "$build/ninja-fuzz.log" qemu-fuzz-x86_64
# shellcheck disable=SC2086
qemu_link_firmware "$obj" $firmware_dirs
