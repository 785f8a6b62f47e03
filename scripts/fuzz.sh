#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run the fork's libFuzzer targets (tests/qtest/fuzz/nvme-passthru/) with
# BUILD_DIR/qemu-build-fuzz/qemu-fuzz-x86_64 (scripts/build-fuzz.sh).
#
#   scripts/fuzz.sh [--runs N] [--jobs J] [TARGET...]
#       fuzz each target until N executions (default FUZZ_RUNS or 10^6),
#       growing the corpus in BUILD_DIR/fuzz/corpus/TARGET from the seeds
#       in tests/fuzz/corpus/TARGET; crashes go to
#       BUILD_DIR/fuzz/crashes/TARGET/ and the run goes on.  Prints
#       executions, exec/s, coverage (libFuzzer's cov and ft) and crashes.
#       J targets run at once (default FUZZ_JOBS or 1): a target's QEMU
#       waits on its vfio-user server much of the time, so two or three
#       at once keep two cores busy.
#   scripts/fuzz.sh --replay FILE-OR-DIR...
#       run each input once (a crash's reproducer, a corpus)
#
# Environment: FUZZ_TARGETS (default: all three), FUZZ_MAX_LEN (1024),
# FUZZ_JOBS (1), FUZZ_ARGS (more libFuzzer options).

set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${BUILD_DIR:-$top/build}" && pwd)
bin="$build/qemu-build-fuzz/qemu-fuzz-x86_64"
out="$build/fuzz"
all_targets="nvme-passthru-hotplug-acpi nvme-passthru-hotplug-native
    vfio-user-nvme-server"
runs=${FUZZ_RUNS:-1000000}
jobs=${FUZZ_JOBS:-1}
max_len=${FUZZ_MAX_LEN:-1024}
replay=0
targets=()

while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --replay) replay=1 ;;
    -h|--help) sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) targets+=("$1") ;;
    esac
    shift
done
[ ${#targets[@]} -gt 0 ] || targets=(${FUZZ_TARGETS:-$all_targets})
[ -x "$bin" ] || { echo "fuzz: error: no $bin (make fuzz-build)" >&2; exit 1; }

# The targets' inputs name the target: TARGET is in the path
target_of() {
    local t
    for t in $all_targets; do
        case $1 in *"$t"*) echo "$t"; return ;; esac
    done
}

if [ $replay = 1 ]; then
    rc=0
    for f in "${targets[@]}"; do
        t=$(target_of "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
        [ -n "$t" ] || { echo "fuzz: cannot tell the target of $f" >&2; exit 1; }
        if [ -d "$f" ]; then
            "$bin" --fuzz-target="$t" -runs=0 "$f" || rc=1
        else
            "$bin" --fuzz-target="$t" "$f" || rc=1
        fi
    done
    exit $rc
fi

# stat NAME LOG: a final statistic of libFuzzer's -print_final_stats
stat() {
    sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

# fuzz_target TARGET: fuzz it to $runs executions; one summary line in
# $out/TARGET.summary
fuzz_target() {
    local t=$1 corpus crashes log done_runs secs start left rc n
    local last cov ft ncrash
    corpus="$out/corpus/$t"
    crashes="$out/crashes/$t"
    log="$out/$t.log"
    mkdir -p "$corpus" "$crashes"
    : >"$log"
    done_runs=0
    secs=0
    start=$(date +%s)
    echo "== $t: fuzzing to $runs executions (log: $log)"
    # libFuzzer stops at the first crash: note it and go on
    for _ in $(seq 1 20); do
        left=$((runs - done_runs))
        [ $left -gt 0 ] || break
        # shellcheck disable=SC2086
        "$bin" --fuzz-target="$t" -runs=$left -max_len="$max_len" \
            -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
            -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} \
            "$corpus" "$top/tests/fuzz/corpus/$t" >"$log.run" 2>&1
        rc=$?
        cat "$log.run" >>"$log"
        n=$(stat number_of_executed_units "$log.run")
        done_runs=$((done_runs + ${n:-0}))
        grep -E '^#[0-9]+[[:space:]]+(pulse|NEW|REDUCE|INITED|DONE)' "$log.run" |
            tail -n 1 | sed "s/^/   /"
        if [ $rc != 0 ]; then
            grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|.*runtime error)' \
                "$log.run" | head -n 4 | sed 's/^/   crash: /'
            [ "${n:-0}" = 0 ] && done_runs=$((done_runs + 1))
        else
            break
        fi
    done
    secs=$(( $(date +%s) - start ))
    last=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    ncrash=$(find "$crashes" -type f \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    printf '%-30s %9s execs %6s s %7s exec/s  cov %-6s ft %-6s crashes %s' \
        "$t" "$done_runs" "$secs" "$((done_runs / (secs > 0 ? secs : 1)))" \
        "${cov:-?}" "${ft:-?}" "$ncrash" >"$out/$t.summary"
}

rm -f "$out"/*.summary
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    fuzz_target "$t" &
    running=$((running + 1))
done
wait
summary=()
total_crashes=0
for t in "${targets[@]}"; do
    summary+=("$(cat "$out/$t.summary" 2>/dev/null || echo "$t: no result")")
    n=$(awk '{print $NF}' "$out/$t.summary" 2>/dev/null)
    total_crashes=$((total_crashes + ${n:-0}))
done
echo
printf '%s\n' "${summary[@]}"
[ $total_crashes = 0 ] || echo "crash inputs: $out/crashes/"
