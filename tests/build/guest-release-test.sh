#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The test guest is packed from one Debian release (TAP).  A machine whose
# apt sources list a second release, with a low priority, once got a
# guest whose lspci died with "GLIBC_2.38 not found": bookworm's libkmod2
# depends on libssl3, trixie's libssl3t64 provides it, and the builder
# took both.  This test builds the same situation in a private apt
# configuration (APT_CONFIG; the machine's /etc/apt and /var/lib/apt are
# only read): the machine's own sources and package lists, plus the other
# release's security suite from the machine's mirror (a few hundred KB),
# pinned to 100.  The packages themselves come from the guest already
# packed in BUILD_DIR/guest (DEB_CACHE), so nothing else is downloaded.
# An unreachable mirror fails the test.

set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${BUILD_DIR:-$top/build}" && pwd)
builder="$top/scripts/guest/build-guest.sh"
. "$top/tests/build/tap.sh"

. /etc/os-release
codename=${VERSION_CODENAME:-}
case $codename in
    bookworm) other=trixie ;;
    *)        other=bookworm ;;
esac

echo "1..5"

# 1. the guest from the machine's own sources: also the package cache
BUILD_DIR=$build "$builder" >"$tmp/out" 2>&1
rc=$?
note <"$tmp/out"
result $rc "the guest packs from the machine's apt sources ($codename)"

# The private apt configuration: the machine's sources, pins and lists,
# plus $other-security on the mirror that serves $codename-security.
apt="$tmp/apt"
mkdir -p "$apt"/{sources.list.d,preferences.d,lists/partial,cache,other.d}
cp /etc/apt/sources.list "$apt/" 2>/dev/null || : >"$apt/sources.list"
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
         /etc/apt/preferences.d/*; do
    [ -f "$f" ] || continue
    case $f in
        */preferences.d/*) cp "$f" "$apt/preferences.d/" ;;
        *) cp "$f" "$apt/sources.list.d/" ;;
    esac
done
find /var/lib/apt/lists -maxdepth 1 -type f ! -name lock \
    -exec cp -p {} "$apt/lists/" \;
: >"$apt/status"
cat >"$apt/apt.conf" <<CONF
Dir::Etc::sourcelist "$apt/sources.list";
Dir::Etc::sourceparts "$apt/sources.list.d";
Dir::Etc::preferences "$apt/preferences";
Dir::Etc::preferencesparts "$apt/preferences.d";
Dir::State::lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
Acquire::Languages "none";
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$apt/apt.conf"

# the URI of the machine's $codename-security (deb822 or one-line sources)
security=$(
    cat "$apt"/sources.list.d/*.sources 2>/dev/null | awk -v s="$codename-security" '
        BEGIN { RS = ""; FS = "\n" }
        $0 ~ ("Suites:[^\n]*" s "([ \n]|$)") {
            for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) {
                sub(/^URIs:[ \t]*/, "", $i); split($i, u, " "); print u[1]; exit } }'
    cat "$apt"/sources.list "$apt"/sources.list.d/*.list 2>/dev/null |
        awk -v s="$codename-security" '$1 == "deb" {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == s) { print $i; exit } }')
security=$(head -n 1 <<<"$security")
[ -n "$security" ] || security=http://deb.debian.org/debian-security
cat >"$apt/sources.list.d/$other-security.sources" <<SRC
Types: deb
URIs: $security
Suites: $other-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
cp "$apt/sources.list.d/$other-security.sources" "$apt/other.d/"
printf 'Package: *\nPin: release n=%s\nPin-Priority: 100\n' "$other-security" \
    >"$apt/preferences.d/$other-low"

# 2. fetch only the new suite's index (the machine's lists stay as they are)
apt-get update -q -o Dir::Etc::sourcelist=/dev/null \
    -o "Dir::Etc::sourceparts=$apt/other.d" -o APT::Get::List-Cleanup=false \
    >"$tmp/out" 2>&1
rc=$?
grep -qE '^(E:|W:.*(Failed|not signed))' "$tmp/out" && rc=1
note <"$tmp/out"
apt-cache policy 2>/dev/null | grep -A1 "$other-security" | note
[ $rc = 0 ] && apt-cache policy 2>/dev/null | grep -q "^ 100 .* $other-security/"
result $? "a private apt configuration adds $other-security from $security at priority 100"

# 3. the builder, in that configuration: one release for every package
BUILD_DIR="$tmp/b" DEB_CACHE="$build/guest/debs" "$builder" >"$tmp/out" 2>&1
rc=$?
note <"$tmp/out"
manifest="$tmp/b/guest/packages"
[ -f "$manifest" ] && note <"$manifest"
release=$(awk '$1 ~ /^linux-image-/ { print $3 }' "$manifest" 2>/dev/null |
          sed -E 's/-(security|updates|backports)$//')
[ $rc = 0 ] && [ -n "$release" ] && [ "$release" != "$other" ] &&
    grep -qx pciutils <(cut -d' ' -f1 "$manifest") &&
    awk -v r="$release" '$3 != r && $3 != r "-security" && $3 != r "-updates" &&
        $3 != r "-backports" { bad = 1; print "# from elsewhere: " $0 }
        END { exit bad }' "$manifest"
result $? "with $other-security listed, every packed package is from the kernel's release (${release:-?})"

# 4. the packed lspci runs with the guest's own loader and libraries
mkdir -p "$tmp/root"
(cd "$tmp/root" && gzip -dc "$tmp/b/guest/initrd.img" | cpio -id --quiet) \
    2>&1 | note
r="$tmp/root"
ld="$r/lib64/ld-linux-x86-64.so.2"
out=$("$ld" --inhibit-cache --library-path "$r/lib" --list \
      "$r/usr/bin/lspci.real" 2>&1)
rc=$?
echo "$out" | note
host=$(grep '=>' <<<"$out" | grep -v "=> $r/")
version=$("$ld" --inhibit-cache --library-path "$r/lib" \
          "$r/usr/bin/lspci.real" --version 2>&1)
rc2=$?
echo "$version" | note
[ $rc = 0 ] && [ -z "$host" ] && [ $rc2 = 0 ] && grep -q '^lspci version' <<<"$version"
result $? "the packed lspci runs with the initrd's loader and libraries only"

# 5. a dependency only the other release can satisfy stops the builder,
# naming it: pin away the kernel release's own libssl3
for s in "$release" "$release-security" "$release-updates"; do
    printf 'Package: libssl3\nPin: release n=%s\nPin-Priority: -1\n\n' "$s"
done >"$apt/preferences.d/no-libssl3"
BUILD_DIR="$tmp/b2" DEB_CACHE="$build/guest/debs" "$builder" >"$tmp/out" 2>&1
rc=$?
note <"$tmp/out"
[ $rc != 0 ] && grep -q '^guest: error: ' "$tmp/out" &&
    grep -q 'libssl3t64' "$tmp/out" && [ ! -e "$tmp/b2/guest/initrd.img" ]
result $? "a library only $other provides stops the builder with an error naming it"

tap_end
