#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build the Linux test guest from Debian packages:
#
#   BUILD_DIR/guest/vmlinuz      the kernel linux-image-amd64 depends on
#   BUILD_DIR/guest/initrd.img   busybox-static, lspci (pciutils with the
#                                libraries it needs), the nvme module and
#                                its dependencies (from modules.dep), and
#                                tests/guest/init as /init
#
# Packages come from apt-get download (or from DEB_CACHE when it holds the
# same .deb).  Re-running with the same package versions and the same init
# script does nothing.
#
# Usage: scripts/guest/build-guest.sh [--force]

set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$top/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
out="$build/guest"
debs="$out/debs"
root="$out/pkgs"
init="$top/tests/guest/init"
stamp="$out/stamp"

say() { echo "guest: $*"; }
die() { echo "guest: error: $*" >&2; exit 1; }

for tool in apt-cache apt-get dpkg-deb depmod cpio gzip xz readelf sha256sum; do
    command -v "$tool" >/dev/null || die "missing tool '$tool'"
done
[ -f "$init" ] || die "missing $init"

# The kernel package linux-image-amd64 points at (linux-image-6.1.*-amd64)
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
       sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 (run apt-get update?)"

# lspci and everything it links against (Depends closure of pciutils)
libpkgs=$(apt-cache depends --recurse --no-recommends --no-suggests \
            --no-conflicts --no-breaks --no-replaces --no-enhances \
            pciutils 2>/dev/null | grep -v '^ ' | grep -v '^<' | sort -u)

pkgs="$kpkg busybox-static $libpkgs"

# one apt-cache call for every candidate version ("pkg=version" lines)
versions=$(apt-cache policy $pkgs 2>/dev/null | awk '
    /^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
    /^  Candidate: / { print p "=" $2 }')
candidate() {
    sed -n "s/^$1=//p" <<<"$versions"
}
for p in $pkgs; do
    v=$(candidate "$p")
    [ -n "$v" ] && [ "$v" != "(none)" ] || die "no candidate version for $p"
done
want="$versions$(sha256sum "$init" | cut -d' ' -f1) init
$(sha256sum "$0" | cut -d' ' -f1) build-guest.sh"

if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ -f "$out/initrd.img" ] &&
   [ -f "$out/vmlinuz" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "up to date ($kpkg, $(wc -w <<<"$pkgs") packages)"
    exit 0
fi

mkdir -p "$debs"
rm -f "$stamp"

# fetch: DEB_CACHE first, then apt-get download
for p in $pkgs; do
    v=$(candidate "$p")
    vfile=${v//:/%3a}
    found=$(ls "$debs/${p}_${vfile}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$found" ] && [ -n "${DEB_CACHE:-}" ]; then
        c=$(ls "$DEB_CACHE/${p}_${vfile}_"*.deb 2>/dev/null | head -n1 || true)
        if [ -n "$c" ]; then
            cp "$c" "$debs/"
            found=$c
            say "using $(basename "$c") from DEB_CACHE"
        fi
    fi
    if [ -z "$found" ]; then
        say "downloading $p $v"
        (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$p=$v" >/dev/null) ||
            die "apt-get download $p=$v failed"
    fi
done

say "unpacking ${kpkg} and $(($(wc -w <<<"$pkgs") - 1)) more packages"
rm -rf "$root"
mkdir -p "$root"
for p in $pkgs; do
    v=$(candidate "$p")
    f=$(ls "$debs/${p}_${v//:/%3a}_"*.deb | head -n1)
    dpkg-deb -x "$f" "$root"
done

kver=${kpkg#linux-image-}
moddir="$root/lib/modules/$kver"
# the package ships no modules.dep (its postinst runs depmod): make it
[ -f "$moddir/modules.dep" ] || depmod -b "$root" "$kver" ||
    die "depmod failed for $kver"
[ -f "$moddir/modules.dep" ] || die "no modules.dep for $kver"
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"

# staging tree of the initramfs
stage="$out/initrd"
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,run,mnt,lib/modules,usr/bin,usr/share/misc}
cp "$root/bin/busybox" "$stage/bin/busybox"
for applet in $("$stage/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done

# nvme and its dependencies, in load order (dependencies first)
declare -A seen=()
order=()
deps_of() {
    sed -n "s|^$1: *||p" "$moddir/modules.dep"
}
visit() {
    local m=$1 d
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    for d in $(deps_of "$m"); do
        visit "$d"
    done
    order+=("$m")
}
nvme=$(grep -o '^[^:]*/nvme\.ko[^:]*' "$moddir/modules.dep" | head -n1)
[ -n "$nvme" ] || die "no nvme module in modules.dep"
visit "$nvme"
: >"$stage/lib/modules/load-order"
for m in "${order[@]}"; do
    base=$(basename "$m")
    case $base in
        *.xz)  xz -dc "$moddir/$m" >"$stage/lib/modules/${base%.xz}"; base=${base%.xz} ;;
        *.zst) zstd -qdc "$moddir/$m" >"$stage/lib/modules/${base%.zst}"; base=${base%.zst} ;;
        *.gz)  gzip -dc "$moddir/$m" >"$stage/lib/modules/${base%.gz}"; base=${base%.gz} ;;
        *)     cp "$moddir/$m" "$stage/lib/modules/$base" ;;
    esac
    echo "$base" >>"$stage/lib/modules/load-order"
done
say "modules: $(tr '\n' ' ' <"$stage/lib/modules/load-order")"

# lspci with the shared libraries it needs, resolved from the packages
libdirs="lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib64 lib usr/lib"
declare -A libseen=()
copy_elf_deps() {
    local f=$1 n src d
    for n in $(readelf -d "$f" 2>/dev/null |
               sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -n "${libseen[$n]:-}" ] && continue
        libseen[$n]=1
        src=""
        for d in $libdirs; do
            if [ -e "$root/$d/$n" ]; then src="$root/$d/$n"; break; fi
        done
        [ -n "$src" ] || { echo "missing $n"; return 1; }
        cp -L "$src" "$stage/lib/$n"
        copy_elf_deps "$src" || return 1
    done
}
lspci_ok=no
if [ -x "$root/usr/bin/lspci" ]; then
    cp "$root/usr/bin/lspci" "$stage/usr/bin/lspci.real"
    interp=$(readelf -l "$root/usr/bin/lspci" |
             sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    if miss=$(copy_elf_deps "$root/usr/bin/lspci") && [ -n "$interp" ] &&
       [ -e "$root$interp" ]; then
        mkdir -p "$stage/$(dirname "$interp")"
        cp -L "$root$interp" "$stage$interp"
        # libraries live in /lib; tell the loader (no ld.so.cache)
        printf '#!/bin/sh\nLD_LIBRARY_PATH=/lib exec /usr/bin/lspci.real "$@"\n' \
            >"$stage/usr/bin/lspci"
        chmod +x "$stage/usr/bin/lspci"
        for ids in usr/share/misc/pci.ids usr/share/hwdata/pci.ids; do
            [ -f "$root/$ids" ] && cp "$root/$ids" "$stage/usr/share/misc/pci.ids"
        done
        lspci_ok=yes
    else
        say "lspci left out ($miss); the agent lists /sys/bus/pci instead"
        rm -f "$stage/usr/bin/lspci.real"
    fi
fi

cp "$init" "$stage/init"
chmod +x "$stage/init"

(cd "$stage" && find . -print0 | sort -z |
    cpio --null -o -H newc --quiet --owner=0:0 | gzip -6 >"$out/initrd.img.tmp")
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$want" >"$stamp"
say "built $out/initrd.img ($(du -k "$out/initrd.img" | cut -f1) KiB, lspci: $lspci_ok)"
say "kernel $out/vmlinuz ($kver)"
