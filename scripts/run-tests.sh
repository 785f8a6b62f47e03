#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run every test of the fork and print one summary line at the end:
# "N passed, N failed".  Tests speak TAP: the build tests under
# tests/build/, the qtests under tests/qtest/ (run with --tap), the same
# qtests built with ASan + UBSan (qtest-san/NAME, when
# BUILD_DIR/qemu-build-san exists: scripts/build-qemu.sh --san), upstream's
# qtests listed in tests/upstream-qtests, the host command's tests under
# tests/host/, virt-vmx-import's under tests/vmx-import/, the fuzz
# targets' corpus replay and smoke runs under tests/fuzz/, the real-guest
# tests under tests/guest/ and the nested kernel-VFIO tests under
# tests/nested/.  Each test's full output goes to
# BUILD_DIR/test-logs/NAME.log.
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
san_report='ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:'

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
    # A sanitizer report from any process of the test: QEMU, the servers
    # it spawned or the test program itself.  (The files also hold ASan's
    # warning that it does not fully support swapcontext, which QEMU's
    # coroutines use: not a report.)
    if [ -n "${SAN_REPORTS:-}" ] &&
        reports=$(grep -l -E "$san_report" "$SAN_REPORTS"/* 2>/dev/null); then
        bad=$((bad + 1))
        echo "   not ok - $name: sanitizer reports in $SAN_REPORTS"
        # shellcheck disable=SC2086
        cat $reports >>"$log"
        # shellcheck disable=SC2086
        grep -h -A 12 -E "$san_report" $reports | head -n 40 |
            sed 's/^/   | /'
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

# The host command (nvme-passthru-host) against synthetic sys/ dev/ proc/
# trees: seconds, no QEMU; then the same with its ASan + UBSan build
# (make tools), whose reports go to stderr and fail the exact checks
for t in "$top"/tests/host/*-test.py; do
    [ -f "$t" ] || continue
    run "host/$(basename "$t" .py)" 5m env BUILD_DIR="$build" python3 "$t"
    run "host-san/$(basename "$t" .py)" 5m env BUILD_DIR="$build" \
        NVME_PASSTHRU_HOST_TOOL="$build/tools-san/nvme-passthru-host" \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 python3 "$t"
done

# virt-vmx-import on the sample VMX and its variations, against the same
# synthetic hosts; then its ASan + UBSan build (make tools)
for t in "$top"/tests/vmx-import/*-test.py; do
    [ -f "$t" ] || continue
    run "vmx-import/$(basename "$t" .py)" 5m env BUILD_DIR="$build" \
        python3 "$t"
    run "vmx-import-san/$(basename "$t" .py)" 5m env BUILD_DIR="$build" \
        VMX_IMPORT_TOOL="$build/tools-san/virt-vmx-import" \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 python3 "$t"
done

for t in "$top"/tests/qtest/*-test.c; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .c)
    run "qtest/$name" 10m env -C "$obj" \
        QTEST_QEMU_BINARY=./qemu-system-x86_64 \
        "tests/qtest/$name" --tap -k
done

# The same qtests under AddressSanitizer (with LeakSanitizer) and
# UndefinedBehaviorSanitizer: every QEMU they start, the vfio-user
# servers included, is the sanitized binary.  Each process writes its
# reports to SAN_REPORTS/*.PID, so that a report fails the test even
# from a process whose exit status or stderr nobody looks at (a server
# exits by itself when its client goes).  The soak runs shorter here.
san="$build/qemu-build-san"
if [ -x "$san/qemu-system-x86_64" ]; then
    # fast_unwind_on_malloc=0: full stacks through glib's g_malloc (built
    # without frame pointers) in leak reports
    san_opts="halt_on_error=1:print_stacktrace=1"
    asan_opts="$san_opts:detect_leaks=1:fast_unwind_on_malloc=0"
    for t in "$top"/tests/qtest/*-test.c; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .c)
        SAN_REPORTS="$logs/qtest-san-$name.reports"
        rm -rf "$SAN_REPORTS"
        mkdir -p "$SAN_REPORTS"
        run "qtest-san/$name" 20m env -C "$san" \
            QTEST_QEMU_BINARY=./qemu-system-x86_64 \
            ASAN_OPTIONS="$asan_opts:log_path=$SAN_REPORTS/asan" \
            UBSAN_OPTIONS="$san_opts:log_path=$SAN_REPORTS/ubsan" \
            LSAN_OPTIONS="suppressions=$top/tests/qtest/nvme-passthru/lsan.supp:print_suppressions=0" \
            PASSTHRU_SOAK_CYCLES=${PASSTHRU_SOAK_CYCLES:-10} \
            PASSTHRU_SOAK_SURPRISE_CYCLES=${PASSTHRU_SOAK_SURPRISE_CYCLES:-10} \
            PASSTHRU_SOAK_WARMUP=${PASSTHRU_SOAK_WARMUP:-2} \
            "tests/qtest/$name" --tap -k
        SAN_REPORTS=
    done
elif [ -z "$filter" ] || [[ qtest-san/ == *$filter* ]]; then
    echo "== qtest-san"
    echo "   not ok - no sanitized build in $san (scripts/build-qemu.sh --san)"
    failures+=("qtest-san (no build)")
    failed=$((failed + 1))
fi

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

# Real Linux guest tests: UEFI guests under TCG (a few minutes); among
# them the libvirt tests (libvirtd 11.3 in a private mount namespace,
# tests/guest/libvirtd.py): libvirt-hostdev-test.py, libvirt-test.py, and
# vmx-import-libvirt-test.py, virt-vmx-import's domain defined and started
for t in "$top"/tests/guest/*-test.py; do
    [ -f "$t" ] && run "guest/$(basename "$t" .py)" 20m python3 "$t"
done

# Kernel VFIO in a nested test bed: L0 TCG + intel-iommu, L1 vfio-pci,
# L2 the fork in qtest mode (tests/nested/bed.py), and libvirtd in L1
# (libvirt-hostdev-nested-test.py); about 2 minutes
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
