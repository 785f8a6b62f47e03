#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Prepare the upstream QEMU tree the fork builds on:
#
#   fetch    get Debian's source package qemu 1:10.2.2+ds-1 from a local
#            cache folder (DEB_CACHE) or with apt-get source, and verify it
#            against the checksums pinned in scripts/qemu-upstream.sha256
#   unpack   dpkg-source -x (Debian's own patch series makes the blob-less
#            +ds tree buildable), then apply patches/*.patch in order
#   overlay  link the project's own files (hw/ include/ qapi/ tests/qtest/
#            docs/) into the tree; an overlay never replaces an upstream
#            file: upstream files change only through patches/
#   all      the three above (default)
#
# Environment: BUILD_DIR (default: build), DEB_CACHE (optional folder that
# holds the .dsc, .orig.tar.xz and .debian.tar.xz).
#
# Re-running is cheap: unpack only happens when the pinned sources or the
# patch queue changed, and then only files whose content changed get a new
# modification time, so ninja rebuilds just what the change touched.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$(mkdir -p "${BUILD_DIR:-$top/build}" && cd "${BUILD_DIR:-$top/build}" && pwd)
pkg=qemu
version=1:10.2.2+ds-1
sums="$top/scripts/qemu-upstream.sha256"
dl="$build/dl"
src="$build/qemu"
overlay_dirs="hw include qapi tests/qtest docs"

say() { echo "upstream: $*"; }
die() { echo "upstream: error: $*" >&2; exit 1; }

# Add deb-src twins of the machine's own apt sources (deb822 and one-line
# forms), plus the newer suites that carry the pinned version, on the
# same mirror, so that apt-get source can find the package.
enable_deb_src() {
    local d=/etc/apt/sources.list.d f mirror
    [ -f "$d/passthru-deb-src.sources" ] && return 0
    [ "$(id -u)" = 0 ] || die "apt-get source needs deb-src lines; run as root"
    for f in "$d"/*.sources; do
        [ -f "$f" ] && sed -e 's/^Types:.*/Types: deb-src/' "$f" && echo
    done >"$d/passthru-deb-src.sources.new"
    { cat /etc/apt/sources.list "$d"/*.list 2>/dev/null || true; } |
        sed -n 's/^deb[ \t]/deb-src /p' >"$d/passthru-deb-src.list"
    mirror=$( (sed -n 's/^URIs:[ \t]*\([^ ]*\).*/\1/p' "$d"/*.sources;
               awk '$1 == "deb-src" && $2 !~ /^\[/ { print $2 }' \
                   "$d/passthru-deb-src.list") 2>/dev/null |
             grep -v security | head -n 1 || true)
    [ -n "$mirror" ] || die "no apt mirror found to fetch the sources from"
    printf 'Types: deb-src\nURIs: %s\nSuites: unstable testing\n%s\n' \
        "$mirror" "Components: main" >>"$d/passthru-deb-src.sources.new"
    mv "$d/passthru-deb-src.sources.new" "$d/passthru-deb-src.sources"
    apt-get update -q >/dev/null
}

fetch() {
    mkdir -p "$dl"
    local f
    if [ -n "${DEB_CACHE:-}" ]; then
        [ -d "$DEB_CACHE" ] || die "DEB_CACHE=$DEB_CACHE is not a folder"
        say "using the local package cache $DEB_CACHE"
        for f in $(awk '{ print $2 }' "$sums"); do
            [ -f "$DEB_CACHE/$f" ] ||
                die "$f is missing from the cache $DEB_CACHE"
            cp -f "$DEB_CACHE/$f" "$dl/$f"
        done
    elif ! (cd "$dl" && sha256sum --quiet -c "$sums" >/dev/null 2>&1); then
        say "fetching $pkg=$version with apt-get source"
        command -v apt-get >/dev/null || die "no apt-get: give DEB_CACHE"
        enable_deb_src
        (cd "$dl" && apt-get source -q --download-only "$pkg=$version") ||
            die "cannot get the source package $pkg=$version with apt;" \
                "give a folder that holds it with DEB_CACHE=..."
    fi
    verify
}

verify() {
    local f want got bad=0
    while read -r want f; do
        [ -f "$dl/$f" ] || die "$f was not fetched"
        got=$(sha256sum "$dl/$f" | cut -d' ' -f1)
        if [ "$got" != "$want" ]; then
            echo "upstream: error: checksum mismatch for $f" >&2
            echo "upstream:   expected sha256 $want" >&2
            echo "upstream:   got      sha256 $got" >&2
            bad=1
        fi
    done <"$sums"
    if [ $bad = 1 ]; then
        rm -f "$dl"/*
        die "the sources are not the pinned $pkg $version; refusing to build"
    fi
    say "verified $pkg $version (sha256)"
}

# What the unpacked tree must match: the pinned sources and the patch queue.
tree_id() {
    cat "$sums" "$top"/patches/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1
}

unpack() {
    local id stage
    id=$(tree_id)
    if [ -f "$src/.passthru-tree-id" ] &&
        [ "$(cat "$src/.passthru-tree-id")" = "$id" ]; then
        return 0
    fi
    verify
    stage="$build/qemu.stage"
    rm -rf "$stage"
    say "unpacking with dpkg-source -x"
    dpkg-source -q -x "$dl/$(awk '/\.dsc$/ { print $2 }' "$sums")" \
        "$stage" >"$build/unpack.log" 2>&1 ||
        die "dpkg-source -x failed, see $build/unpack.log"
    rm -rf "$stage/.pc"
    local p
    for p in "$top"/patches/*.patch; do
        [ -f "$p" ] || continue
        say "applying patches/$(basename "$p")"
        patch -d "$stage" -p1 --batch --forward --quiet <"$p" ||
            die "patches/$(basename "$p") does not apply to $pkg $version"
    done
    if [ -d "$src" ]; then
        # Keep the modification time of every file whose content is the
        # same, so that the next build is incremental.
        rsync -rlp --checksum --delete --exclude=/.git \
            "$stage/" "$src/"
        rm -rf "$stage"
    else
        mv "$stage" "$src"
    fi
    echo "$id" >"$src/.passthru-tree-id"
}

overlay() {
    [ -d "$src" ] || die "no unpacked tree at $src: run '$0 unpack' first"
    local d f rel n=0
    # Drop links to project files that no longer exist.
    find "$src" -type l -lname "$top/*" ! -exec test -e {} \; -delete
    for d in $overlay_dirs; do
        [ -d "$top/$d" ] || continue
        while IFS= read -r -d '' f; do
            rel=${f#"$top"/}
            if [ -e "$src/$rel" ] && [ ! -L "$src/$rel" ]; then
                die "$rel exists upstream: change upstream files with a" \
                    "patch in patches/, never by overlay"
            fi
            if [ "$(readlink "$src/$rel" 2>/dev/null)" != "$f" ]; then
                mkdir -p "$(dirname "$src/$rel")"
                ln -sfn "$f" "$src/$rel"
            fi
            n=$((n + 1))
        done < <(find "$top/$d" -type f ! -name '*~' ! -name '.#*' -print0)
    done
    say "overlaid $n project files"
}

case "${1:-all}" in
fetch) fetch ;;
verify) verify ;;
unpack) unpack ;;
overlay) overlay ;;
all)
    if [ -f "$src/.passthru-tree-id" ] &&
        [ "$(cat "$src/.passthru-tree-id")" = "$(tree_id)" ]; then
        : # tree is current; no need to fetch again
    else
        fetch
        unpack
    fi
    overlay
    ;;
*) die "usage: $0 [fetch|verify|unpack|overlay|all]" ;;
esac
