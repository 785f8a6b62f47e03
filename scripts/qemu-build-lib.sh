# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
#
# Configure and build QEMU in a build folder of its own: sourced by
# scripts/build-qemu.sh (the fork, and its sanitizer build) and
# scripts/build-fuzz.sh (the libFuzzer binary).  $src is the upstream
# tree.  TAG starts every line a function prints ("build-san: ...").

: "${src:?the upstream tree}"

# qemu_configure TAG OBJ LOG FLAG...: configure QEMU in OBJ with FLAG...,
# from scratch, unless OBJ was configured with the very same flags; LOG
# gets configure's output
qemu_configure() {
    local tag=$1 obj=$2 log=$3 want
    shift 3
    want="$*"
    if [ -f "$obj/build.ninja" ] &&
        [ "$(cat "$obj/.passthru-flags" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "$tag: configuring QEMU in $obj (log: $log)"
    rm -rf "$obj"
    mkdir -p "$obj"
    if ! (cd "$obj" && "$src/configure" "$@") >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "$tag: error: configure failed, see $log" >&2
        exit 1
    fi
    echo "$want" >"$obj/.passthru-flags"
}

# qemu_ninja TAG OBJ LOG TARGET...: build TARGET... in OBJ, the whole
# output in LOG; every 250th step shows, so that a long build shows life
# without a wall of text
qemu_ninja() {
    local tag=$1 obj=$2 log=$3 start rc
    shift 3
    echo "$tag: ninja $* (log: $log)"
    start=$(date +%s)
    set +e
    ninja -C "$obj" "$@" 2>&1 | tee "$log" |
        awk -v tag="$tag" -F'[][/]' '/^\[[0-9]+\/[0-9]+\]/ {
            if ($2 % 250 == 0 || $2 == $3)
                printf "%s:   step %s of %s\n", tag, $2, $3; fflush(); next }
            { print; fflush() }'
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" != 0 ]; then
        echo "$tag: error: ninja failed, see $log" >&2
        exit 1
    fi
    echo "$tag: done in $(( $(date +%s) - start ))s"
}

# qemu_link_firmware OBJ DIR...: a binary run from the build tree looks
# for its firmware path inside qemu-bundle/: link the folders DIR... there
qemu_link_firmware() {
    local obj=$1 d
    shift
    for d in "$@"; do
        if [ -d "$d" ] && [ ! -e "$obj/qemu-bundle$d" ]; then
            mkdir -p "$(dirname "$obj/qemu-bundle$d")"
            ln -sfn "$d" "$obj/qemu-bundle$d"
        fi
    done
}
