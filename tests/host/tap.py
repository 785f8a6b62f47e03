# SPDX-License-Identifier: GPL-2.0-or-later
"""What the Python TAP tests of commands on synthetic hosts share
(tests/host/host-test.py, tests/vmx-import/vmx-import-test.py): the
comparison that says what differs, and the runner (@test): one test a function,
its docstring the description, a fresh scratch folder each, TAP on
stdout, the names given on the command line to run only those."""

import os
import shutil
import sys
import tempfile
import traceback


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}\n  got:  {got!r}\n  want: {want!r}")


TESTS = []


def test(fn):
    """@test: FN(scratch folder) is a test"""
    TESTS.append(fn)
    return fn


def main(tool, prefix, make):
    """Run the tests on the command TOOL, which `make MAKE` builds; exit
    status 1 if one failed"""
    only = sys.argv[1:]
    tests = [t for t in TESTS if not only or t.__name__ in only]
    print(f"1..{len(tests)}")
    failed = 0
    if not os.access(tool, os.X_OK):
        print(f"# {tool} is missing: run make {make}")
    for i, fn in enumerate(tests, 1):
        tmp = tempfile.mkdtemp(prefix=prefix)
        desc = f"{fn.__name__}: {' '.join(fn.__doc__.split())}"
        try:
            if not os.access(tool, os.X_OK):
                raise AssertionError(f"{tool} is missing (make {make})")
            fn(tmp)
            print(f"ok {i} - {desc}")
        except Exception as e:
            failed += 1
            print(f"not ok {i} - {desc}")
            detail = str(e) if isinstance(e, AssertionError) else \
                traceback.format_exc()
            for line in detail.splitlines():
                print(f"#   {line}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
    return 1 if failed else 0
