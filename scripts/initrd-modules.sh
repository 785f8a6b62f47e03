# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
#
# Kernel modules for an initramfs, from a Debian kernel package unpacked
# with dpkg-deb -x: sourced by scripts/guest/build-guest.sh (the test
# guest) and scripts/nested/build-bed.sh (L1 of the nested test bed).
# There is no modprobe in those initramfs images: their init loads the
# modules one by one, in the order of the load-order file.

# module_find MODDIR NAME: the path of module NAME ("-" and "_" alike) as
# MODDIR/modules.dep names it; nothing when there is no such module
module_find() {
    grep -o "^[^:]*/${2//_/[-_]}\.ko[^:]*" "$1/modules.dep" | head -n1 || true
}

# modules_install MODDIR DEST PATH...: the modules at PATH... (as
# modules.dep names them) and every module they depend on, uncompressed
# into DEST; DEST/load-order lists them in load order, dependencies first
modules_install() {
    local moddir=$1 dest=$2 m base
    local -A seen=()
    local order=()
    shift 2

    for m in "$@"; do
        _modules_visit "$m"
    done
    : >"$dest/load-order"
    for m in "${order[@]}"; do
        base=$(basename "$m")
        case $base in
            *.xz)  xz -dc "$moddir/$m" >"$dest/${base%.xz}"; base=${base%.xz} ;;
            *.zst) zstd -qdc "$moddir/$m" >"$dest/${base%.zst}"; base=${base%.zst} ;;
            *.gz)  gzip -dc "$moddir/$m" >"$dest/${base%.gz}"; base=${base%.gz} ;;
            *)     cp "$moddir/$m" "$dest/$base" ;;
        esac
        echo "$base" >>"$dest/load-order"
    done
}

# depth first: a module after its dependencies (modules_install's locals)
_modules_visit() {
    local m=$1 d
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    for d in $(sed -n "s|^$m: *||p" "$moddir/modules.dep"); do
        _modules_visit "$d"
    done
    order+=("$m")
}
