#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The fork's QEMU finds its firmware (TAP).  The +ds sources carry no
# ROMs: the binary searches Debian's folders (scripts/build-qemu.sh,
# firmware_dirs).  Once the NIC ROMs of ipxe-qemu were missing from that
# path and "qemu-system-x86_64 -M q35" stopped with: failed to find
# romfile "efi-e1000e.rom".  Checked here: the x86 machines start with
# their default devices, every ROM file name the binary refers to is
# found, and so is every ROM Debian's own qemu-system-x86 finds.

set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${BUILD_DIR:-$top/build}" && pwd)
qemu="$build/qemu-build/qemu-system-x86_64"
. "$top/tests/build/tap.sh"

# ROM names the binary builds at run time or shares with a longer literal
# ("bios.bin" is the tail of "vgabios.bin" in the binary's strings)
extra_roms="bios.bin bios-256k.bin"
# names in the binary that are no files: the option ROM area's memory region
not_files="pc.rom"
# The folders Debian's qemu-system-x86 on bookworm searches; its own
# binary, when installed, says for itself.
debian_dirs="/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu"
if [ -x /usr/bin/qemu-system-x86_64 ] &&
    dpkg -S /usr/bin/qemu-system-x86_64 >/dev/null 2>&1; then
    debian_dirs=$(/usr/bin/qemu-system-x86_64 -L help 2>/dev/null || echo "$debian_dirs")
fi

machines="q35 pc microvm"
echo "1..$(($(wc -w <<<"$machines") + 2))"

# 1-3: each machine starts with its default devices (NIC, VGA, firmware);
# QMP's quit ends it as soon as the machine is created (-S: no guest code)
for m in $machines; do
    printf '%s\n' '{"execute": "qmp_capabilities"}' '{"execute": "quit"}' |
        timeout 60 "$qemu" -M "$m" -display none -S -qmp stdio \
        >"$tmp/out" 2>&1
    rc=$?
    note <"$tmp/out"
    [ $rc = 0 ] && ! grep -qiE 'failed|could not|error' "$tmp/out"
    result $? "qemu-system-x86_64 -M $m with its default devices starts"
done

# the binary's firmware path, in its own order
"$qemu" -L help >"$tmp/dirs" 2>&1
note <"$tmp/dirs"
found() {   # <name>: the first folder of the path that has it
    local d
    while read -r d; do
        [ -r "$d/$1" ] && { echo "$d/$1"; return 0; }
    done <"$tmp/dirs"
    return 1
}

# 4: every ROM file name in the binary (efi-e1000e.rom, kvmvapic.bin,
# vgabios-stdvga.bin, ...) is found in the firmware path
roms=$(grep -aoE '(^|[^%])[a-z][a-z0-9_-]*\.(rom|bin)' "$qemu" | cut -c2- |
       grep -E '^[a-z]' | sort -u)
roms=$(printf '%s\n' $roms $extra_roms | sort -u | grep -vxF -f <(printf '%s\n' $not_files))
missing=""
for r in $roms; do
    if f=$(found "$r"); then
        echo "# $r: $f"
    else
        missing+=" $r"
    fi
done
[ -z "$missing" ] || echo "# not found:$missing"
[ -n "$roms" ] && [ -z "$missing" ]
result $? "the $(wc -w <<<"$roms") ROM files the binary names are all found${missing:+ (missing:$missing)}"

# 5: every ROM that Debian's own QEMU finds (its firmware path's files)
missing=""
count=0
for d in $debian_dirs; do
    for f in "$d"/*.rom "$d"/*.bin; do
        [ -f "$f" ] || continue
        count=$((count + 1))
        found "$(basename "$f")" >/dev/null || missing+=" $(basename "$f")"
    done
done
[ -z "$missing" ] || echo "# not found:$missing"
[ $count != 0 ] && [ -z "$missing" ]
result $? "the $count ROMs in Debian's firmware path ($(echo $debian_dirs)) are all found${missing:+ (missing:$missing)}"

tap_end
