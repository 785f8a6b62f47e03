#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The CI part of the fuzz targets (TAP): for each target, every input of
# the committed seed corpus (tests/fuzz/corpus/TARGET/, crashes found and
# fixed included) runs without a crash, leak or sanitizer report, and a
# short run from a fixed seed finds none either.  The long runs are
# "make fuzz" (scripts/fuzz.sh).
#
# The hotplug targets' corpora replay a second time with the RCU thread
# finalizing removed devices at its own pace (NVME_PASSTHRU_FUZZ_RCU_FINALIZE,
# see nvme-passthru-fuzz.c), as in a VM: the inputs that found the reset
# race of patches/0024 are among them.
#
# Environment: FUZZ_SMOKE_RUNS (executions per target, default 1000),
# FUZZ_SMOKE_SECONDS (time bound per target, default 40),
# FUZZ_HANG_SECONDS (a run that takes longer hangs: killed and failed,
# default 600; a backstop behind libFuzzer's own -timeout, which the
# targets make work by taking SIGALRM in QEMU's main thread).

set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${BUILD_DIR:-$top/build}" && pwd)
bin="$build/qemu-build-fuzz/qemu-fuzz-x86_64"
targets="nvme-passthru-hotplug-acpi nvme-passthru-hotplug-native
    vfio-user-nvme-server"
runs=${FUZZ_SMOKE_RUNS:-1000}
secs=${FUZZ_SMOKE_SECONDS:-40}
hang=${FUZZ_HANG_SECONDS:-600}
. "$top/tests/build/tap.sh"

# fuzz ARGS...: the fuzzer, killed if it hangs (exit status 124)
fuzz() {
    timeout -k 10 "$hang" "$bin" "$@"
}

# result_log STATUS DESCRIPTION LOG: result, and what went wrong in LOG
result_log() {
    result "$1" "$2"
    [ "$1" != 124 ] || echo "hung: killed after $hang s" | note
    [ "$1" = 0 ] ||
        sed -n '/ERROR\|runtime error\|SUMMARY\|#[0-9]/p' "$3" | tail -n 12 |
            note
}

cov_of() {
    grep -E '^#[0-9]+[[:space:]]' "$1" | tail -n 1 |
        sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p'
}

echo "1..8"
for t in $targets; do
    seeds="$top/tests/fuzz/corpus/$t"
    count=$(find "$seeds" -type f | wc -l)
    log="$tmp/$t-replay.log"
    mkdir -p "$tmp/$t"
    cp "$seeds"/* "$tmp/$t/"
    # -runs=0: run the corpus once, mutate nothing
    fuzz --fuzz-target="$t" -runs=0 -timeout=30 "$tmp/$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    result_log $rc "$t: the $count inputs of the seed corpus replay ($(cov_of "$log"))" "$log"

    log="$tmp/$t-smoke.log"
    fuzz --fuzz-target="$t" -runs="$runs" -seed=1 -max_len=1024 \
        -max_total_time="$secs" -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$tmp/" "$tmp/$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    result_log $rc "$t: ${execs:-?} executions from seed 1 find no crash ($(cov_of "$log"))" "$log"
done
for t in nvme-passthru-hotplug-acpi nvme-passthru-hotplug-native; do
    log="$tmp/$t-rcu.log"
    NVME_PASSTHRU_FUZZ_RCU_FINALIZE=1 \
        fuzz --fuzz-target="$t" -runs=0 -timeout=30 "$tmp/$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    result_log $rc "$t: the seed corpus replays with RCU finalizing removed devices" "$log"
done
tap_end
