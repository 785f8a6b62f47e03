# SPDX-License-Identifier: GPL-2.0-or-later
#
# What the shell tests share (sourced, not run): a scratch folder removed
# at exit, and TAP output.
#
#   result STATUS DESCRIPTION   "ok N - ..." if STATUS is 0, else "not ok"
#   note                        stdin as TAP comments
#   tap_end                     exit status: 0 if every result was ok

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0

result() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        fails=$((fails + 1))
    fi
}

note() { sed 's/^/# /'; }

tap_end() { [ "$fails" = 0 ]; }
