#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build L1 of the nested kernel-VFIO test bed (tests/nested/bed.py):
#
#   BUILD_DIR/nested/vmlinuz   the kernel linux-image-amd64 depends on
#   BUILD_DIR/nested/l1.img    initramfs: busybox-static, the modules of
#                              vfio-pci, vfio_iommu_type1, nvme, e1000e
#                              and ext4 (a file system L1 can mount: a
#                              host that uses its drive; with their
#                              dependencies, from modules.dep), the
#                              fork's qemu-system-x86_64 and
#                              nvme-passthru-host (stripped) with the
#                              loader and the libraries ldd names
#                              (libjson-c for the second),
#                              OVMF_CODE_4M.fd for L2, and
#                              tests/nested/l1-init as /init
#   BUILD_DIR/nested/l1-libvirt.img
#                              l1.img followed by a second cpio archive
#                              (the kernel unpacks both): Debian's libvirt
#                              as installed on this machine (libvirtd, its
#                              QEMU driver, virsh, the CPU map; the
#                              packages libvirt0 libvirt-common
#                              libvirt-daemon libvirt-daemon-driver-qemu
#                              libvirt-clients of the installed version),
#                              the libraries ldd names that l1.img lacks,
#                              OVMF_VARS_4M.fd and the configuration in
#                              tests/nested/libvirt/.  Only
#                              tests/nested/libvirt-*-test.py boot it.
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
host_tool=${NESTED_HOST_TOOL:-$build/tools/nvme-passthru-host}
ovmf=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
lvconf="$top/tests/nested/libvirt"
stamp="$out/stamp"

# shellcheck source=scripts/initrd-modules.sh
. "$top/scripts/initrd-modules.sh"

say() { echo "nested: $*"; }
die() { echo "nested: error: $*" >&2; exit 1; }

for tool in apt-cache apt-get dpkg-deb depmod cpio gzip xz readelf ldd strip \
            sha256sum; do
    command -v "$tool" >/dev/null || die "missing tool '$tool'"
done
for f in "$init" "$qemu" "$host_tool" "$ovmf" "$ovmf_vars" "$lvconf/qemu.conf" \
         "$lvconf/libvirtd.conf"; do
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
# libvirt: the version installed here (bookworm-backports' 11.3 on
# bookworm), whose libraries ldd finds on this machine
lvpkgs="libvirt0 libvirt-common libvirt-daemon libvirt-daemon-driver-qemu
        libvirt-clients"
lvver=$(dpkg-query -W -f '${Version}' libvirt-daemon-driver-qemu 2>/dev/null ||
        true)
[ -n "$lvver" ] || die "libvirt is not installed (scripts/install-deps.sh)"
want="$versions
libvirt=$lvver
$(sha256sum "$init" "$0" "$top/scripts/initrd-modules.sh" "$qemu" "$host_tool" "$lvconf"/* | cut -d' ' -f1 | tr '\n' ' ')"

if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ -f "$out/l1.img" ] &&
   [ -f "$out/l1-libvirt.img" ] && [ -f "$out/vmlinuz" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "up to date ($kpkg)"
    exit 0
fi
mkdir -p "$debs"
rm -f "$stamp"

# fetch PACKAGE VERSION: into $debs, from a cache if one has it
fetch() {
    local p=$1 v=$2 vfile=${2//:/%3a} found c dir
    found=$(ls "$debs/${p}_${vfile}_"*.deb 2>/dev/null | head -n1 || true)
    for dir in ${DEB_CACHE:-} "$build/guest/debs" /var/cache/apt/archives; do
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
}
for p in $pkgs; do
    fetch "$p" "$(candidate "$p")"
done
for p in $lvpkgs; do
    fetch "$p" "$lvver"
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

# modules, dependencies first; the crypto providers nvme's t10-pi and
# ext4/jbd2 ask for by name (there is no modprobe to load them on demand)
mods=()
for name in crc64_rocksoft_generic crct10dif_generic crc32c_generic nvme \
            e1000e vfio vfio_iommu_type1 vfio-pci ext4; do
    m=$(module_find "$moddir" "$name")
    [ -n "$m" ] || { [ "${name%_generic}" != "$name" ] && continue; die "no module $name"; }
    mods+=("$m")
done
modules_install "$moddir" "$stage/lib/modules" "${mods[@]}"
say "modules: $(tr '\n' ' ' <"$stage/lib/modules/load-order")"

# pack BINARY: stripped into usr/bin, with what the dynamic loader needs
pack() {
    local bin=$1 lib interp
    strip -o "$stage/usr/bin/$(basename "$bin")" "$bin"
    ldd "$bin" | awk '/=> \//{ print $3 } /^\t\/.*ld-linux/{ print $1 }' |
    while read -r lib; do
        cp -L "$lib" "$stage/lib/$(basename "$lib")"
    done
    interp=$(readelf -l "$bin" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
    [ -n "$interp" ] || die "no program interpreter in $bin"
    mkdir -p "$stage/$(dirname "$interp")"
    cp -L "$interp" "$stage$interp"
}
# the fork's QEMU for L2; the host command (tests/nested/host-command-*)
pack "$qemu"
pack "$host_tool"
cp "$ovmf" "$stage/usr/share/OVMF/"

cp "$init" "$stage/init"
chmod +x "$stage/init"
(cd "$stage" && find . -print0 | sort -z |
    cpio --null -o -H newc --quiet --owner=0:0 | gzip -1 >"$out/l1.img.tmp")
mv "$out/l1.img.tmp" "$out/l1.img"
say "built $out/l1.img ($(du -k "$out/l1.img" | cut -f1) KiB), kernel $kver"

# The libvirt layer: a second archive after l1.img, so that the tests
# that do not need libvirt boot no bigger an image
lvroot="$out/lvpkgs"
lvstage="$out/lvinitrd"
rm -rf "$lvroot" "$lvstage"
mkdir -p "$lvroot"
for p in $lvpkgs; do
    dpkg-deb -x "$(ls "$debs/${p}_${lvver//:/%3a}_"*.deb | head -n1)" "$lvroot"
done
multi=usr/lib/x86_64-linux-gnu
drvdir=$multi/libvirt/connection-driver
mkdir -p "$lvstage"/{usr/sbin,usr/bin,lib,$drvdir,usr/share/libvirt,usr/share/OVMF} \
         "$lvstage/etc/libvirt" \
         "$lvstage"/var/{lib,cache,log}/libvirt/qemu "$lvstage"/var/log/libvirt/qemu
ln -s /run "$lvstage/var/run"
cp "$lvroot/usr/sbin/libvirtd" "$lvstage/usr/sbin/"
cp "$lvroot/usr/bin/virsh" "$lvstage/usr/bin/"
cp "$lvroot/$drvdir/libvirt_driver_qemu.so" "$lvstage/$drvdir/"
cp -r "$lvroot/usr/share/libvirt/cpu_map" "$lvstage/usr/share/libvirt/"
# the libraries: libvirt's own from the packages, the rest from this
# machine (ldd), each only if l1.img does not have it
for bin in usr/sbin/libvirtd usr/bin/virsh $drvdir/libvirt_driver_qemu.so; do
    LD_LIBRARY_PATH="$lvroot/$multi" ldd "$lvroot/$bin" |
        awk '/=> \//{ print $3 } / => not found/{ print "missing:" $1 }'
done | sort -u | while read -r lib; do
    case $lib in missing:*) die "ldd: ${lib#missing:} not found" ;; esac
    base=$(basename "$lib")
    [ -e "$stage/lib/$base" ] || cp -L "$lib" "$lvstage/lib/$base"
done
cp "$ovmf_vars" "$lvstage/usr/share/OVMF/"
# libvirt's managed detach looks up a VFIO variant driver for the device
# in modules.alias: the aliases of the modules L1 has, as depmod would
# write them for exactly those
mkdir -p "$lvstage/lib/modules/$kver"
sed 's/\.ko$//; s/-/_/g' "$stage/lib/modules/load-order" |
    awk 'NR == FNR { have[$1] = 1; next } $1 == "alias" && have[$3]' - \
        "$moddir/modules.alias" >"$lvstage/lib/modules/$kver/modules.alias"
cp "$lvconf/qemu.conf" "$lvconf/libvirtd.conf" "$lvstage/etc/libvirt/"
# libvirtd resolves its built-in QEMU user before it reads qemu.conf
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
    'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/bin/false' >"$lvstage/etc/passwd"
printf '%s\n' 'root:x:0:' 'kvm:x:994:' 'libvirt-qemu:x:64055:' >"$lvstage/etc/group"
(cd "$lvstage" && find . -print0 | sort -z |
    cpio --null -o -H newc --quiet --owner=0:0 | gzip -1 >"$out/libvirt.cpio.gz")
cat "$out/l1.img" "$out/libvirt.cpio.gz" >"$out/l1-libvirt.img.tmp"
mv "$out/l1-libvirt.img.tmp" "$out/l1-libvirt.img"
echo "$want" >"$stamp"
say "built $out/l1-libvirt.img ($(du -k "$out/l1-libvirt.img" | cut -f1) KiB:" \
    "l1.img + libvirt $lvver, $(du -sk "$lvstage" | cut -f1) KiB unpacked)"
