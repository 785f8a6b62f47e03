#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run every test of the fork and print one summary line at the end:
# "N passed, N failed".  Tests speak TAP: the build tests under
# tests/build/, the qtests under tests/qtest/ (run with --tap), upstream's
# qtests listed in tests/upstream-qtests, the fuzz targets' corpus replay
# and smoke runs under tests/fuzz/, the real-guest tests under
# tests/guest/ and the nested kernel-VFIO tests under tests/nested/.  Each
# test's full output goes to BUILD_DIR/test-logs/NAME.log.
#
# Usage: scripts/run-tests.sh [NAME-FILTER]

set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${BUILD_DIR:-$top/build}" && pwd)
obj="$build/qemu-build"
logs="$build/test-logs"
filter="${1:-}"
passed=0
failed=0
failures=()

mkdir -p "$logs"

# run NAME TIMEOUT CMD...: run one TAP producer, count its results
run() {
    local name=$1 limit=$2 log="$logs/${1//\//-}.log" rc ok bad
    shift 2
    [ -n "$filter" ] && [[ $name != *$filter* ]] && return 0
    echo "== $name"
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    # TAP result lines, nested subtests included
    grep -E '^[[:space:]]*(not )?ok [0-9]' "$log" | sed 's/^[[:space:]]*/   /'
    ok=$(grep -cE '^[[:space:]]*ok [0-9]' "$log" || true)
    bad=$(grep -cE '^[[:space:]]*not ok [0-9]' "$log" || true)
    if [ "$rc" != 0 ] && [ "$bad" = 0 ]; then
        # crashed, timed out or failed outside a TAP test point
        bad=1
        echo "   not ok - $name exited with status $rc" \
             "$([ "$rc" = 124 ] && echo "(timeout after $limit)")"
    fi
    if [ "$ok" = 0 ] && [ "$bad" = 0 ]; then
        bad=1
        echo "   not ok - $name ran no test"
    fi
    if [ "$bad" != 0 ]; then
        failures+=("$name (log: $log)")
        tail -n 15 "$log" | sed 's/^/   | /'
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
}

for t in "$top"/tests/build/*-test.sh; do
    [ -f "$t" ] && run "build/$(basename "$t" .sh)" 30m bash "$t"
done

for t in "$top"/tests/qtest/*-test.c; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .c)
    run "qtest/$name" 10m env -C "$obj" \
        QTEST_QEMU_BINARY=./qemu-system-x86_64 \
        "tests/qtest/$name" --tap -k
done

# Upstream's own qtests (tests/upstream-qtests: which and why), on the
# fork's binary, always under TCG: where /dev/kvm exists, a private mount
# namespace puts a read-only empty file over it.  On some machines /dev/kvm
# is no normal KVM (OVMF stops; q35 loses SMM, so bios-tables-test sees
# another FACP than upstream's expected tables, which are TCG's).
nokvm=()
if [ -e /dev/kvm ] && [ "$(id -u)" = 0 ]; then
    : >"$logs/.no-kvm"
    nokvm=(unshare -m --propagation private sh -c
           'mount --bind "$0" /dev/kvm && mount -o remount,ro,bind /dev/kvm &&
            exec "$@"' "$logs/.no-kvm")
fi
while read -r name args <&3; do
    # shellcheck disable=SC2086
    run "upstream-qtest/$name" 10m env -C "$obj" \
        QTEST_QEMU_BINARY=./qemu-system-x86_64 PYTHON=/usr/bin/python3 \
        "${nokvm[@]}" "tests/qtest/$name" --tap -k $args
done 3< <(sed 's/#.*//' "$top/tests/upstream-qtests" | awk 'NF')

# The fuzz targets' seed corpora and a short run of each (the clang
# ASan/UBSan build of scripts/build-fuzz.sh; long runs: make fuzz)
for t in "$top"/tests/fuzz/*-test.sh; do
    [ -f "$t" ] && run "fuzz/$(basename "$t" .sh)" 15m bash "$t"
done

# Real Linux guest tests: UEFI guests under TCG (a few minutes)
for t in "$top"/tests/guest/*-test.py; do
    [ -f "$t" ] && run "guest/$(basename "$t" .py)" 20m python3 "$t"
done

# Kernel VFIO in a nested test bed: L0 TCG + intel-iommu, L1 vfio-pci,
# L2 the fork in qtest mode (tests/nested/bed.py; about 2 minutes)
for t in "$top"/tests/nested/*-test.py; do
    [ -f "$t" ] && run "nested/$(basename "$t" .py)" 15m python3 "$t"
done

echo
if [ ${#failures[@]} -gt 0 ]; then
    echo "Failed:"
    printf '  %s\n' "${failures[@]}"
    echo
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
