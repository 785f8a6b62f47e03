#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# make soak: the soak tests at full size, and a table of QEMU's RSS and
# open fds at the start and the end of each, with the growth per cycle.
#
#   qtest   tests/qtest/passthru-soak-test: SOAK_CYCLES (1000) add +
#           orderly remove cycles and SOAK_SURPRISE_CYCLES (100) add +
#           surprise removal cycles (half removal=surprise device_del,
#           half kill -9 of the server), in ACPI and native mode
#   guest   tests/guest/soak-guest-test.py: SOAK_GUEST_CYCLES (200) add +
#           orderly remove cycles in a real Linux guest (ACPI)
#   san     with --san: the qtest soak again under ASan + UBSan
#           (qemu-build-san), any sanitizer report fails it
#
# Usage: scripts/soak.sh [--quick] [--san]
#   --quick   the sizes make check runs (40/20 qtest, 10 guest cycles)
# Logs and results.txt go to BUILD_DIR/soak/.

set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${BUILD_DIR:-$top/build}" && pwd)
out="$build/soak"
san=0
quick=0
for a in "$@"; do
    case "$a" in
        --san) san=1 ;;
        --quick) quick=1 ;;
        *) echo "usage: $0 [--quick] [--san]" >&2; exit 2 ;;
    esac
done
if [ "$quick" = 1 ]; then
    : "${SOAK_CYCLES:=40}" "${SOAK_SURPRISE_CYCLES:=20}" "${SOAK_GUEST_CYCLES:=10}"
else
    : "${SOAK_CYCLES:=1000}" "${SOAK_SURPRISE_CYCLES:=100}" \
      "${SOAK_GUEST_CYCLES:=200}"
fi
mkdir -p "$out"
rm -f "$out"/*.log "$out/results.txt"
failed=()

# step NAME CMD...: run one soak, its output in $out/NAME.log
step() {
    local name=$1 log="$out/$1.log" t0=$SECONDS rc
    shift
    echo "== soak: $name (log: $log)"
    "$@" >"$log" 2>&1
    rc=$?
    grep -E '^(not )?ok [0-9]' "$log" | sed 's/^/   /'
    echo "   ($((SECONDS - t0)) s, exit status $rc)"
    [ "$rc" = 0 ] || failed+=("$name")
}

qtest_env=(PASSTHRU_SOAK_CYCLES="$SOAK_CYCLES"
           PASSTHRU_SOAK_SURPRISE_CYCLES="$SOAK_SURPRISE_CYCLES")

step qtest env -C "$build/qemu-build" "${qtest_env[@]}" \
    QTEST_QEMU_BINARY=./qemu-system-x86_64 \
    tests/qtest/passthru-soak-test --tap -k

step guest env SOAK_GUEST_CYCLES="$SOAK_GUEST_CYCLES" \
    python3 "$top/tests/guest/soak-guest-test.py"

if [ "$san" = 1 ]; then
    reports="$out/san.reports"
    rm -rf "$reports"
    mkdir -p "$reports"
    opts="halt_on_error=1:print_stacktrace=1"
    san_report='ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:'
    step qtest-san env -C "$build/qemu-build-san" "${qtest_env[@]}" \
        QTEST_QEMU_BINARY=./qemu-system-x86_64 \
        ASAN_OPTIONS="$opts:detect_leaks=1:fast_unwind_on_malloc=0:log_path=$reports/asan" \
        UBSAN_OPTIONS="$opts:log_path=$reports/ubsan" \
        LSAN_OPTIONS="suppressions=$top/tests/qtest/nvme-passthru/lsan.supp:print_suppressions=0" \
        tests/qtest/passthru-soak-test --tap -k
    # (the files also hold ASan's swapcontext warning: not a report)
    if grep -q -l -E "$san_report" "$reports"/* 2>/dev/null; then
        echo "   sanitizer reports: $reports"
        failed+=("qtest-san (sanitizer reports)")
    fi
fi

# The tests print: SOAK NAME cycles=N rss_start=.. rss_end=.. fds_start=..
# fds_end=.. rss_per_cycle=.. [asan=1]
{
    printf '%-28s %7s %10s %10s %10s %6s %6s\n' soak cycles \
        "RSS start" "RSS end" "KiB/cycle" "fds" "fds"
    printf '%-28s %7s %10s %10s %10s %6s %6s\n' "" "" "KiB" "KiB" "" \
        start end
    for f in "$out"/qtest.log "$out"/guest.log "$out"/qtest-san.log; do
        [ -f "$f" ] || continue
        tag=
        [ "$f" = "$out/qtest-san.log" ] && tag=" (asan)"
        sed -n 's/^# SOAK //p' "$f" | while read -r name kv; do
            declare -A v=()
            for x in $kv; do v[${x%%=*}]=${x#*=}; done
            printf '%-28s %7s %10s %10s %10s %6s %6s\n' "$name$tag" \
                "${v[cycles]}" "${v[rss_start]}" "${v[rss_end]}" \
                "${v[rss_per_cycle]}" "${v[fds_start]}" "${v[fds_end]}"
        done
    done
} | tee "$out/results.txt"
echo "(RSS under ASan includes its quarantine of freed memory: not checked)"

if [ ${#failed[@]} -gt 0 ]; then
    echo "soak: FAILED: ${failed[*]}"
    exit 1
fi
echo "soak: passed (fds did not grow, RSS grew < 16 KiB per cycle)"
