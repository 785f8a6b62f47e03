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
#   BUILD_DIR/guest/packages     what was packed: package, version, release
#
# Every package comes from the kernel's Debian release, resolved by apt as
# for an empty system; packages come from apt-get download (or from
# DEB_CACHE when it holds the same .deb).  The packed busybox and lspci
# must run with the packed loader and libraries, or the build stops.
# Re-running with the same package versions and the same init script does
# nothing.
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

# shellcheck source=scripts/initrd-modules.sh
. "$top/scripts/initrd-modules.sh"

say() { echo "guest: $*"; }
die() { echo "guest: error: $*" >&2; exit 1; }

for tool in apt-cache apt-get dpkg-deb depmod cpio gzip xz readelf sha256sum; do
    command -v "$tool" >/dev/null || die "missing tool '$tool'"
done
[ -f "$init" ] || die "missing $init"

# Every package comes from the kernel's own Debian release.  A machine
# whose apt sources list a second release (say a low-priority trixie next
# to bookworm) would otherwise mix them: bookworm's libkmod2 depends on
# libssl3, which trixie's libssl3t64 provides, and trixie's libcrypto
# needs a newer glibc than the guest's.  So: the release is the one of
# the linux-image-amd64 candidate (bookworm-security or -updates count as
# bookworm); a private preferences file pins that release's suites to 990,
# apt's own resolver computes the closure as for an empty system, and any
# package that still comes from elsewhere stops the build.
apt_dir="$out/apt"
mkdir -p "$apt_dir"
: >"$apt_dir/status"
apt_opts=(-o "Dir::State::status=$apt_dir/status"
          -o "Dir::Cache::pkgcache=$apt_dir/pkgcache.bin"
          -o "Dir::Cache::srcpkgcache=$apt_dir/srcpkgcache.bin")

# "<index>\t<codename>" for every package index apt knows, <index> as
# apt-cache policy prints it ("http://... bookworm/main amd64 Packages")
index_releases() {
    apt-cache "$@" policy | awk '
        /^ *-?[0-9]+ / { idx = $0; sub(/^ *-?[0-9]+ /, "", idx); next }
        /^ +release / && idx != "" {
            n = ""
            if (match($0, /[ ,]n=[^,]*/)) n = substr($0, RSTART + 3, RLENGTH - 3)
            print idx "\t" n; idx = "" }'
}
# "<package>\t<version>\t<index>" for every version of the packages
version_indexes() {
    apt-cache "${apt_opts[@]}" policy "$@" | awk '
        /^[^ ].*:$/ { p = substr($0, 1, length($0) - 1); next }
        /^  [A-Z]/ { next }
        /^ (\*\*\*|   ) [^ ]+ -?[0-9]+$/ { v = $(NF - 1); next }
        /^ +-?[0-9]+ / { i = $0; sub(/^ +-?[0-9]+ /, "", i); print p "\t" v "\t" i }'
}
# the codenames a package version is found in (one a line)
releases_of() {  # <package> <version>
    awk -F'\t' -v p="$1" -v v="$2" '
        FNR == NR { rel[$1] = $2; next }
        $1 == p && $2 == v && rel[$3] != "" { print rel[$3] }' \
        <(printf '%s\n' "$indexes") <(printf '%s\n' "$vindexes") | sort -u
}

indexes=$(index_releases) || die "apt-cache policy failed"
kcand=$(apt-cache policy linux-image-amd64 2>/dev/null |
        sed -n 's/^  Candidate: //p')
[ -n "$kcand" ] && [ "$kcand" != "(none)" ] ||
    die "cannot resolve linux-image-amd64 (run apt-get update?)"
vindexes=$(version_indexes linux-image-amd64)
krel=$(releases_of linux-image-amd64 "$kcand" | head -n1)
[ -n "$krel" ] ||
    die "linux-image-amd64 $kcand comes from no release apt knows by name"
release=$(sed -E 's/-(security|updates|proposed-updates|backports)$//' <<<"$krel")
accepted="$release $release-security $release-updates $release-backports"

# the release's own suites first; then the machine's own pins, if any
eval "$(apt-config shell machine_prefs Dir::Etc::preferences/f)"
{
    for suite in "$release" "$release-security" "$release-updates"; do
        printf 'Package: *\nPin: release n=%s\nPin-Priority: 990\n\n' "$suite"
    done
    if [ -f "${machine_prefs:-}" ]; then cat "$machine_prefs"; fi
} >"$apt_dir/preferences"
apt_opts+=(-o "Dir::Etc::preferences=$apt_dir/preferences")

# The kernel package linux-image-amd64 points at (linux-image-6.1.*-amd64)
kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null |
       sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 in $release"
kver=$(apt-cache "${apt_opts[@]}" policy "$kpkg" | sed -n 's/^  Candidate: //p')
[ -n "$kver" ] && [ "$kver" != "(none)" ] || die "no candidate version for $kpkg"

# busybox-static, lspci and everything they need, as apt would install
# them on an empty system ("pkg=version" lines)
sim=$(apt-get "${apt_opts[@]}" -s -q --no-install-recommends install \
        busybox-static pciutils 2>&1) ||
    die "apt-get cannot resolve busybox-static and pciutils in $release:
$sim"
versions="$kpkg=$kver
$(sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p' <<<"$sim" | sort)"
pkgs=$(cut -d= -f1 <<<"$versions")
grep -qx pciutils <<<"$pkgs" || die "apt-get install -s listed no pciutils:
$sim"
candidate() {
    sed -n "s/^$1=//p" <<<"$versions"
}

# every package from the kernel's release, or stop
vindexes=$(version_indexes $pkgs)
manifest=""
for p in $pkgs; do
    v=$(candidate "$p")
    rels=$(releases_of "$p" "$v" | tr '\n' ' ')
    ok=""
    for r in $rels; do
        [[ " $accepted " == *" $r "* ]] && ok=$r && break
    done
    [ -n "$ok" ] || die "$p $v comes from ${rels:-no known release}, not from" \
        "the kernel's release $release: check the apt sources and pins"
    manifest+="$p $v $ok
"
done
printf '%s' "$manifest" >"$out/packages"
want="$versions
$(sha256sum "$init" | cut -d' ' -f1) init
$(sha256sum "$0" | cut -d' ' -f1) build-guest.sh
$(sha256sum "$top/scripts/initrd-modules.sh" | cut -d' ' -f1) initrd-modules.sh"

if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ -f "$out/initrd.img" ] &&
   [ -f "$out/vmlinuz" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "up to date ($kpkg, $(wc -w <<<"$pkgs") packages from $release)"
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

# Every packed program must run as the guest will run it: a static one
# as it is, a dynamic one with the packed loader and the packed libraries
# only.  A library from another release (GLIBC_2.38 not found) or one
# taken from the host stops the build here, not in the guest.
check_runs() {  # <name> <path in the stage> <args...>
    local name=$1 bin=$stage$2 ld res
    shift 2
    ld=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    if [ -z "$ld" ]; then
        res=$("$bin" "$@" 2>&1) ||
            die "the packed $name does not run: $(head -n 3 <<<"$res")"
        ran=$res
        return 0
    fi
    [ -x "$stage$ld" ] || die "the packed $name needs $ld, which is not packed"
    res=$("$stage$ld" --inhibit-cache --library-path "$stage/lib" \
          --list "$bin" 2>&1) ||
        die "the packed $name does not load: $(head -n 3 <<<"$res")"
    res=$(grep '=>' <<<"$res" | grep -v "=> $stage/" || true)
    [ -z "$res" ] || die "the packed $name needs libraries that are not packed:
$res"
    res=$("$stage$ld" --inhibit-cache --library-path "$stage/lib" \
          "$bin" "$@" 2>&1) ||
        die "the packed $name does not run: $(head -n 3 <<<"$res")"
    ran=$res
}
cp "$root/bin/busybox" "$stage/bin/busybox"
check_runs busybox /bin/busybox true
for applet in $("$stage/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done

# nvme and its dependencies, in load order (dependencies first)
nvme=$(module_find "$moddir" nvme)
[ -n "$nvme" ] || die "no nvme module in modules.dep"
modules_install "$moddir" "$stage/lib/modules" "$nvme"
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
[ -x "$root/usr/bin/lspci" ] || die "pciutils has no /usr/bin/lspci"
cp "$root/usr/bin/lspci" "$stage/usr/bin/lspci.real"
interp=$(readelf -l "$root/usr/bin/lspci" |
         sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[ -n "$interp" ] && [ -e "$root$interp" ] ||
    die "lspci: no program interpreter '$interp' in the packages"
miss=$(copy_elf_deps "$root/usr/bin/lspci") || die "lspci: $miss"
mkdir -p "$stage/$(dirname "$interp")"
cp -L "$root$interp" "$stage$interp"
# libraries live in /lib; tell the loader (no ld.so.cache)
printf '#!/bin/sh\nLD_LIBRARY_PATH=/lib exec /usr/bin/lspci.real "$@"\n' \
    >"$stage/usr/bin/lspci"
chmod +x "$stage/usr/bin/lspci"
for ids in usr/share/misc/pci.ids usr/share/hwdata/pci.ids; do
    if [ -f "$root/$ids" ]; then cp "$root/$ids" "$stage/usr/share/misc/pci.ids"; fi
done

check_runs lspci /usr/bin/lspci.real --version
say "packed tools run: busybox, $(head -n 1 <<<"$ran")"

cp "$init" "$stage/init"
chmod +x "$stage/init"

(cd "$stage" && find . -print0 | sort -z |
    cpio --null -o -H newc --quiet --owner=0:0 | gzip -6 >"$out/initrd.img.tmp")
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$want" >"$stamp"
say "built $out/initrd.img ($(du -k "$out/initrd.img" | cut -f1) KiB, from $release)"
say "kernel $out/vmlinuz ($kver)"
