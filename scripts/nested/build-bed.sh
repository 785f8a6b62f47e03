#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build L1 of the nested kernel-VFIO test bed (tests/nested/bed.py):
#
#   BUILD_DIR/nested/vmlinuz   the kernel linux-image-amd64 depends on
#   BUILD_DIR/nested/l1.img    initramfs: busybox-static, the modules of
#                              vfio-pci, vfio_iommu_type1, nvme and
#                              e1000e (with their dependencies, from
#                              modules.dep), the
#                              fork's qemu-system-x86_64 (stripped) with
#                              the loader and the libraries ldd names,
#                              OVMF_CODE_4M.fd for L2, and
#                              tests/nested/l1-init as /init
#
# Like scripts/guest/build-guest.sh, Debian packages are only downloaded
# (apt-get download, or taken from DEB_CACHE / the guest's download
# folder) and unpacked with dpkg-deb -x; nothing is installed.  Re-running
# with the same inputs does nothing.
#
# Usage: scripts/nested/build-bed.sh [--force]

set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$top/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
out="$build/nested"
debs="$out/debs"
root="$out/pkgs"
init="$top/tests/nested/l1-init"
qemu=${NESTED_QEMU:-$build/qemu-build/qemu-system-x86_64}
ovmf=/usr/share/OVMF/OVMF_CODE_4M.fd
stamp="$out/stamp"

say() { echo "nested: $*"; }
die() { echo "nested: error: $*" >&2; exit 1; }

for tool in apt-cache apt-get dpkg-deb depmod cpio gzip xz readelf ldd strip \
            sha256sum; do
    command -v "$tool" >/dev/null || die "missing tool '$tool'"
done
for f in "$init" "$qemu" "$ovmf"; do
    [ -f "$f" ] || die "missing $f"
done

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
       sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 (run apt-get update?)"
pkgs="$kpkg busybox-static"
versions=$(apt-cache policy $pkgs 2>/dev/null | awk '
    /^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
    /^  Candidate: / { print p "=" $2 }')
candidate() { sed -n "s/^$1=//p" <<<"$versions"; }
for p in $pkgs; do
    v=$(candidate "$p")
    [ -n "$v" ] && [ "$v" != "(none)" ] || die "no candidate version for $p"
done
want="$versions
$(sha256sum "$init" "$0" "$qemu" | cut -d' ' -f1 | tr '\n' ' ')"

if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ -f "$out/l1.img" ] &&
   [ -f "$out/vmlinuz" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "up to date ($kpkg)"
    exit 0
fi
mkdir -p "$debs"
rm -f "$stamp"

for p in $pkgs; do
    v=$(candidate "$p")
    vfile=${v//:/%3a}
    found=$(ls "$debs/${p}_${vfile}_"*.deb 2>/dev/null | head -n1 || true)
    for dir in ${DEB_CACHE:-} "$build/guest/debs"; do
        [ -z "$found" ] && [ -d "$dir" ] || continue
        c=$(ls "$dir/${p}_${vfile}_"*.deb 2>/dev/null | head -n1 || true)
        if [ -n "$c" ]; then
            cp "$c" "$debs/"
            found=$c
            say "using $(basename "$c") from $dir"
        fi
    done
    if [ -z "$found" ]; then
        say "downloading $p $v"
        (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$p=$v" >/dev/null) ||
            die "apt-get download $p=$v failed"
    fi
done

rm -rf "$root"
mkdir -p "$root"
for p in $pkgs; do
    v=$(candidate "$p")
    dpkg-deb -x "$(ls "$debs/${p}_${v//:/%3a}_"*.deb | head -n1)" "$root"
done
kver=${kpkg#linux-image-}
moddir="$root/lib/modules/$kver"
[ -f "$moddir/modules.dep" ] || depmod -b "$root" "$kver" || die "depmod failed"
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"

stage="$out/initrd"
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules,lib64,usr/bin,usr/share/OVMF}
cp "$root/bin/busybox" "$stage/bin/busybox"
for applet in $("$stage/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done

# modules, dependencies first; the crypto providers nvme's t10-pi asks
# for by name (there is no modprobe to load them on demand)
declare -A seen=()
order=()
visit() {
    local m=$1 d
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    for d in $(sed -n "s|^$m: *||p" "$moddir/modules.dep"); do
        visit "$d"
    done
    order+=("$m")
}
for name in crc64_rocksoft_generic crct10dif_generic nvme e1000e vfio \
            vfio_iommu_type1 vfio-pci; do
    m=$(grep -o "^[^:]*/${name//_/[-_]}\.ko[^:]*" "$moddir/modules.dep" | head -n1)
    [ -n "$m" ] || { [ "${name%_generic}" != "$name" ] && continue; die "no module $name"; }
    visit "$m"
done
: >"$stage/lib/modules/load-order"
for m in "${order[@]}"; do
    base=$(basename "$m")
    case $base in
        *.xz)  xz -dc "$moddir/$m" >"$stage/lib/modules/${base%.xz}"; base=${base%.xz} ;;
        *.zst) zstd -qdc "$moddir/$m" >"$stage/lib/modules/${base%.zst}"; base=${base%.zst} ;;
        *)     cp "$moddir/$m" "$stage/lib/modules/$base" ;;
    esac
    echo "$base" >>"$stage/lib/modules/load-order"
done
say "modules: $(tr '\n' ' ' <"$stage/lib/modules/load-order")"

# the fork's QEMU for L2, with what the dynamic loader needs
strip -o "$stage/usr/bin/qemu-system-x86_64" "$qemu"
ldd "$qemu" | awk '/=> \//{ print $3 } /^\t\/.*ld-linux/{ print $1 }' |
while read -r lib; do
    cp -L "$lib" "$stage/lib/$(basename "$lib")"
done
interp=$(readelf -l "$qemu" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
[ -n "$interp" ] || die "no program interpreter in $qemu"
mkdir -p "$stage/$(dirname "$interp")"
cp -L "$interp" "$stage$interp"
cp "$ovmf" "$stage/usr/share/OVMF/"

cp "$init" "$stage/init"
chmod +x "$stage/init"
(cd "$stage" && find . -print0 | sort -z |
    cpio --null -o -H newc --quiet --owner=0:0 | gzip -1 >"$out/l1.img.tmp")
mv "$out/l1.img.tmp" "$out/l1.img"
echo "$want" >"$stamp"
say "built $out/l1.img ($(du -k "$out/l1.img" | cut -f1) KiB), kernel $kver"
