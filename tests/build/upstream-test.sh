#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Tests of the build itself (TAP): the pinned upstream sources are
# verified, a wrong or missing file stops the build with a clear message,
# the patch queue applies to a fresh unpack, no upstream file is
# committed, the overlay never replaces an upstream file, and a second
# build has nothing to do.

set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${BUILD_DIR:-$top/build}" && pwd)
sums="$top/scripts/qemu-upstream.sha256"
. "$top/tests/build/tap.sh"

# A cache folder holding the pinned files, as links to the verified ones.
cache() {
    local f
    mkdir -p "$1"
    for f in $(awk '{ print $2 }' "$sums"); do
        ln -sf "$build/dl/$f" "$1/$f"
    done
}

echo "1..8"

BUILD_DIR=$build "$top/scripts/upstream.sh" verify >"$tmp/out" 2>&1
result $? "the fetched sources match the pinned sha256 sums"

cache "$tmp/bad"
dsc=$(awk '/\.dsc$/ { print $2 }' "$sums")
rm "$tmp/bad/$dsc"
sed 's/10\.2\.2/10.2.3/' "$build/dl/$dsc" >"$tmp/bad/$dsc"
BUILD_DIR="$tmp/b1" DEB_CACHE="$tmp/bad" "$top/scripts/upstream.sh" fetch \
    >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out" | sed 's/^/# /'
[ $rc != 0 ] && grep -q "checksum mismatch for $dsc" "$tmp/out" &&
    grep -q "refusing to build" "$tmp/out" && [ ! -e "$tmp/b1/qemu" ]
result $? "a wrong checksum in the cache stops the build with a clear message"

cache "$tmp/partial"
rm "$tmp/partial/$dsc"
BUILD_DIR="$tmp/b2" DEB_CACHE="$tmp/partial" "$top/scripts/upstream.sh" \
    fetch >"$tmp/out" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "$dsc is missing from the cache" "$tmp/out"
result $? "a file missing from the cache is named, nothing is fetched"

# The patch queue on a fresh unpack of the pinned package
cache "$tmp/good"
BUILD_DIR="$tmp/b3" DEB_CACHE="$tmp/good" "$top/scripts/upstream.sh" fetch \
    >"$tmp/out" 2>&1 &&
    BUILD_DIR="$tmp/b3" "$top/scripts/upstream.sh" unpack >>"$tmp/out" 2>&1 &&
    [ "$(grep -c '^upstream: applying patches/' "$tmp/out")" = \
      "$(ls "$top"/patches/*.patch | wc -l)" ]
rc=$?
[ $rc = 0 ] || sed 's/^/# /' "$tmp/out"
result $rc "every patch in patches/ applies to a fresh dpkg-source -x tree"

# No committed file is a copy of an upstream file (same path, same bytes;
# our own Makefile or README.rst may share a name with upstream's)
orig=$(awk '/orig\.tar/ { print $2 }' "$sums")
tar -tJf "$build/dl/$orig" >"$tmp/listing"
prefix=$(head -n 1 "$tmp/listing" | cut -d/ -f1)
sed "s|^$prefix/||" "$tmp/listing" | sort >"$tmp/upstream"
git -C "$top" ls-files | sort >"$tmp/ours"
comm -12 "$tmp/upstream" "$tmp/ours" >"$tmp/both"
mkdir -p "$tmp/orig"
[ -s "$tmp/both" ] && sed "s|^|$prefix/|" "$tmp/both" |
    tar -xJf "$build/dl/$orig" -C "$tmp/orig" -T -
copies=0
while read -r f; do
    if cmp -s "$top/$f" "$tmp/orig/$prefix/$f"; then
        echo "# committed upstream file: $f"
        copies=$((copies + 1))
    fi
done <"$tmp/both"
[ -s "$tmp/ours" ] && [ $copies = 0 ]
result $? "no upstream file is committed ($(wc -l <"$tmp/ours") files checked)"

# The overlay refuses to shadow an upstream file
mkdir -p "$tmp/top/scripts" "$tmp/top/hw/pci" "$tmp/b4/qemu/hw/pci"
cp "$top/scripts/upstream.sh" "$top/scripts/qemu-upstream.sha256" \
    "$tmp/top/scripts/"
echo "/* ours */" >"$tmp/top/hw/pci/pci.c"
echo "/* upstream */" >"$tmp/b4/qemu/hw/pci/pci.c"
BUILD_DIR="$tmp/b4" "$tmp/top/scripts/upstream.sh" overlay >"$tmp/out" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "hw/pci/pci.c exists upstream" "$tmp/out" &&
    grep -q "upstream" "$tmp/b4/qemu/hw/pci/pci.c"
result $? "the overlay never replaces an upstream file"

# Nothing to rebuild right after a build: qemu-version.h is regenerated
# on every run by design, but no object is compiled and nothing linked.
targets=$(ls "$top"/tests/qtest/*-test.c 2>/dev/null |
          sed 's|.*/\(.*\)\.c$|tests/qtest/\1|'
          sed 's/#.*//' "$top/tests/upstream-qtests" |
          awk 'NF { print "tests/qtest/" $1 }')
out=$(ninja -C "$build/qemu-build" qemu-system-x86_64 $targets 2>&1)
rc=$?
echo "$out" | tail -n 3 | sed 's/^/# /'
[ $rc = 0 ] && ! echo "$out" | grep -qE 'Compiling|Linking'
result $? "a second build with nothing changed compiles and links nothing"

cmd=$(grep -E '^[^#]*make' "$top/.ci/run" | tail -n 1 | sed 's/^ *//')
[ -n "$cmd" ] && grep -qF "$cmd" "$top/README.rst"
result $? ".ci/run runs the test command README.rst gives ($cmd)"

tap_end
