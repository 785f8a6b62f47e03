#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nvme-passthru-host against synthetic hosts (tests/host/faketree.py):
list, enable, disable, check and watch with --root, every refusal and
edge case, exact outputs and exit codes.  TAP on stdout.

The command must exist (make build); a missing one fails every test.
NVME_PASSTHRU_HOST_TOOL=PATH tests another build (run-tests.sh: the
ASan + UBSan one, where any report changes stderr or the exit status
and so fails the test).
"""

import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faketree import FakeKernel, Tree  # noqa: E402
from fakeqmp import FakeQmp  # noqa: E402
import tap  # noqa: E402
from tap import eq, test  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD_DIR", os.path.join(TOP, "build"))
# NVME_PASSTHRU_HOST_TOOL: another build of it (the sanitized one)
TOOL = os.path.realpath(os.environ.get("NVME_PASSTHRU_HOST_TOOL") or
                        os.path.join(BUILD, "tools", "nvme-passthru-host"))

A = "0000:01:00.0"      # the free NVMe in most trees
B = "0000:02:00.0"      # a second NVMe


def run(tree, *args, env=None):
    """Run the command against TREE; (status, stdout, stderr)"""
    e = dict(os.environ)
    e.pop("NVME_PASSTHRU_HOST_ROOT", None)
    e.update(env or {})
    cmd = [TOOL] + (["--root", tree.root] if tree else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, env=e,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


def run_json(tree, *args):
    rc, out, err = run(tree, "--json", *args)
    try:
        return rc, json.loads(out), err
    except ValueError:
        raise AssertionError(f"not JSON (rc {rc}): {out!r} {err!r}")


def host(tmp, iommu=True):
    """A host with the IOMMU on and one free NVMe, A, alone in group 1,
    in physical slot 3"""
    t = Tree(tmp)
    if iommu:
        t.iommu_on()
    t.pci(A, group=1 if iommu else None, slot="3")
    c = t.controller(A)
    t.namespace(c, "nvme0n1", "259:0")
    return t, c


def refused(t, bdf, reason):
    """enable BDF is refused with REASON, and nothing was written"""
    rc, out, err = run(t, "enable", bdf)
    eq(rc, 2, "exit status")
    eq(out, "")
    eq(err, f"nvme-passthru-host: enable {bdf}: refused: {reason}\n")
    eq(t.read(f"sys/bus/pci/devices/{bdf}/driver_override"), "",
       "driver_override untouched")
    eq(t.read("sys/bus/pci/drivers/nvme/unbind"), "", "nvme/unbind")
    eq(t.read("sys/bus/pci/drivers_probe"), "", "drivers_probe")


# ------------------------------------------------------------------ list

@test
def list_json_fields(tmp):
    """list --json: every field of a free NVMe, a host disk and a
    passed-through one; a non-NVMe device is not listed"""
    t, c = host(tmp)
    t.pci(B, group=2, device=0xa80a)
    c1 = t.controller(B, ctrl="nvme1", model="Disk B", serial="SB",
                      fw="1.0", devnum="240:1")
    ns = t.namespace(c1, "nvme1n1", "259:1")
    t.partition(ns, "nvme1n1p2", "259:3")
    t.mount("259:3", "/dev/nvme1n1p2", "/")
    t.pci("0000:04:00.0", group=4, driver="vfio-pci")
    t.pci("0000:03:00.0", cls=0x020000, vendor=0x8086, device=0x10d3,
          driver="e1000e", group=3)
    rc, j, err = run_json(t, "list")
    eq(rc, 0)
    eq([d["bdf"] for d in j["devices"]], [A, B, "0000:04:00.0"])
    eq(j["devices"][0], {
        "bdf": A, "vendor": "144d", "device": "a808",
        "controller": "nvme0", "model": "Samsung SSD 970 EVO Plus 1TB",
        "serial": "S4EWNX0R123456", "firmware": "2B2QEXM7",
        "driver": "nvme", "driver-override": None, "iommu-group": 1,
        "group-members": [], "slot": "3", "passthrough": "off",
        "persistent": False, "in-use": False, "in-use-reasons": [],
        "passable": True, "refusal": None})
    b = j["devices"][1]
    eq((b["in-use"], b["in-use-reasons"], b["passable"], b["slot"]),
       (True, ["/dev/nvme1n1p2 is mounted on / (the root file system)"],
        True, None))
    v = j["devices"][2]
    eq((v["driver"], v["passthrough"], v["model"], v["controller"]),
       ("vfio-pci", "on", None, None))


@test
def list_text(tmp):
    """list for people: one block a controller"""
    t, c = host(tmp)
    t.pci(B, group=1, driver="vfio-pci")      # shares A's group
    rc, out, err = run(t, "list")
    eq(rc, 0)
    eq(out.splitlines()[:7], [
        f"{A}  144d:a808  nvme0  Samsung SSD 970 EVO Plus 1TB",
        "    serial S4EWNX0R123456, firmware 2B2QEXM7",
        "    driver nvme, IOMMU group 1 (shared), slot 3",
        f"    group member {B} (driver vfio-pci)",
        "    passthrough off",
        f"    free, but cannot be passed through: IOMMU group 1 of {A} is "
        f"shared with {B} (vfio-pci): a hotplug device must be alone in "
        "its group (put it behind a port with ACS)",
        f"{B}  144d:a808  -  (model unknown: not on the nvme driver)"])


@test
def list_slot_addresses(tmp):
    """a slot's address as the kernel writes it: dddd:bb:ss names the
    drive's slot, dddd:bb (a bus-wide slot) too; another device number
    or bus does not"""
    t, c = host(tmp)                            # A: slot 3, 0000:01:00
    t.pci(B, group=2)                           # 0000:02:00.0
    t.write("sys/bus/pci/slots/0-2/address", "0000:02\n")
    t.pci("0000:03:00.0", group=3)
    t.write("sys/bus/pci/slots/9/address", "0000:03:01\n")
    t.write("sys/bus/pci/slots/8/address", "0000:30:00\n")
    rc, j, err = run_json(t, "list")
    eq(rc, 0)
    eq([(d["bdf"], d["slot"]) for d in j["devices"]],
       [(A, "3"), (B, "0-2"), ("0000:03:00.0", None)])


@test
def list_unidentified_controller(tmp):
    """a controller the nvme driver has not identified yet (Linux prints
    "(efault)" for its model, serial and firmware): unknown, not that
    text"""
    t = host(tmp)[0]
    t.pci(B, group=2)
    t.controller(B, ctrl="nvme1", model="(efault)", serial="(efault)",
                 fw="(efault)", devnum="240:1")
    rc, j, err = run_json(t, "list")
    eq([(d["controller"], d["model"], d["serial"], d["firmware"])
        for d in j["devices"]][1:], [("nvme1", None, None, None)])
    eq(run(t, "list")[1].splitlines()[5],
       f"{B}  144d:a808  nvme1  (model unknown: not on the nvme driver)")


@test
def list_empty(tmp):
    """list on a host without NVMe says so, exit 0; JSON: no devices"""
    t = Tree(tmp)
    eq(run(t, "list"), (0, "no NVMe controller on this host\n", ""))
    eq(run_json(t, "list")[:2], (0, {"devices": []}))


# ------------------------------------------------------------- in use

@test
def refuse_mounted_namespace(tmp):
    """a mounted namespace: enable refused, nothing written"""
    t, c = host(tmp)
    t.mount("259:0", "/dev/nvme0n1", "/srv/data")
    refused(t, A, f"{A} is in use by the host: /dev/nvme0n1 is mounted "
            "on /srv/data")


@test
def refuse_mounted_partition_by_number(tmp):
    """a mounted partition, found by major:minor (btrfs-like source)"""
    t, c = host(tmp)
    t.partition(c + "/nvme0n1", "nvme0n1p1", "259:4")
    t.mount("259:4", "/dev/mapper/odd-name", "/mnt/my\\040disk")
    refused(t, A, f"{A} is in use by the host: /dev/nvme0n1p1 is mounted "
            "on /mnt/my disk")


@test
def refuse_mounted_by_source(tmp):
    """btrfs: an anonymous device number, the source names the disk"""
    t, c = host(tmp)
    t.partition(c + "/nvme0n1", "nvme0n1p1", "259:4")
    t.mount("0:45", "/dev/nvme0n1p1", "/home", fstype="btrfs")
    refused(t, A, f"{A} is in use by the host: /dev/nvme0n1p1 is mounted "
            "on /home")


@test
def refuse_swap(tmp):
    """a partition in use as swap"""
    t, c = host(tmp)
    t.partition(c + "/nvme0n1", "nvme0n1p3", "259:5")
    t.swap("/dev/nvme0n1p3")
    refused(t, A, f"{A} is in use by the host: /dev/nvme0n1p3 is in use "
            "as swap")


@test
def refuse_lvm_holder(tmp):
    """a partition held by LVM whose volume is the root file system"""
    t, c = host(tmp)
    p = t.partition(c + "/nvme0n1", "nvme0n1p2", "259:2")
    t.holder(p, "dm-0", "254:0", dm_name="vg0-root",
             dm_uuid="LVM-abcdef")
    t.mount("254:0", "/dev/mapper/vg0-root", "/")
    refused(t, A, f"{A} is in use by the host: nvme0n1p2 is held by dm-0 "
            "(LVM vg0-root): /dev/dm-0 is mounted on / (the root file "
            "system)")


@test
def refuse_md_holder(tmp):
    """a namespace in an MD array nobody mounted: still held"""
    t, c = host(tmp)
    t.holder(c + "/nvme0n1", "md127", "9:127", md_level="raid1")
    refused(t, A, f"{A} is in use by the host: nvme0n1 is held by md127 "
            "(MD raid1)")


@test
def refuse_root_and_boot(tmp):
    """the root and boot disk: every reason, named"""
    t, c = host(tmp)
    ns = c + "/nvme0n1"
    t.partition(ns, "nvme0n1p1", "259:1")
    t.partition(ns, "nvme0n1p2", "259:2")
    t.mount("259:2", "/dev/nvme0n1p2", "/")
    t.mount("259:1", "/dev/nvme0n1p1", "/boot/efi", fstype="vfat")
    rc, out, err = run(t, "enable", A)
    eq(rc, 2)
    reasons = err.split(": in use by the host: ")[-1]
    eq(sorted(err.split("in use by the host: ")[1].strip().split("; ")),
       ["/dev/nvme0n1p1 is mounted on /boot/efi (the boot disk)",
        "/dev/nvme0n1p2 is mounted on / (the root file system)"], reasons)


@test
def refuse_open_by_process(tmp):
    """a namespace held open by a process (no mount, no holder), the
    controller's character device, a namespace's generic one (ngXnY)"""
    t, c = host(tmp)
    t.process(4242, "dd", fds=["/dev/nvme0n1", "/dev/null"])
    refused(t, A, f"{A} is in use by the host: /dev/nvme0n1 is open in "
            "process 4242 (dd)")
    t2 = Tree(tmp + "/2")
    t2.iommu_on()
    t2.pci(A, group=1)
    t2.controller(A)
    t2.process(77, "nvme", fds=["/dev/nvme0"])
    refused(t2, A, f"{A} is in use by the host: /dev/nvme0 is open in "
            "process 77 (nvme)")
    t3 = Tree(tmp + "/3")
    t3.iommu_on()
    t3.pci(A, group=1)
    c = t3.controller(A)
    t3.write(f"{c}/ng0n1/dev", "241:0\n")
    t3.process(88, "fio", fds=["/dev/ng0n1"])
    refused(t3, A, f"{A} is in use by the host: /dev/ng0n1 is open in "
            "process 88 (fio)")


@test
def refuse_multipath_head(tmp):
    """native multipath: the mounted disk is the subsystem's head, found
    through /sys/block and, without that link, under nvme-subsystem"""
    for link in (True, False):
        d = f"{tmp}/{link}"
        t = Tree(d)
        t.iommu_on()
        t.pci(A, group=1)
        c = t.controller(A)
        h = t.multipath_namespace(c, "nvme0c0n1", "nvme0n1",
                                  block_link=link)
        t.partition(h, "nvme0n1p1", "259:1")
        t.mount("259:1", "/dev/nvme0n1p1", "/var")
        refused(t, A, f"{A} is in use by the host: /dev/nvme0n1p1 is "
                "mounted on /var")


@test
def multipath_free(tmp):
    """native multipath, nothing mounted: free, and listed so"""
    t = Tree(tmp)
    t.iommu_on()
    t.pci(A, group=1)
    c = t.controller(A)
    t.multipath_namespace(c, "nvme0c0n1", "nvme0n1")
    t.mount("259:9", "/dev/sda1", "/")
    rc, j, err = run_json(t, "list")
    eq((rc, j["devices"][0]["in-use"], j["devices"][0]["passable"]),
       (0, False, True))


# ------------------------------------------------- other refusals

@test
def refuse_group_not_viable(tmp):
    """a second device of the group on a host driver: not viable"""
    t, c = host(tmp)
    t.pci("0000:01:00.1", cls=0x020000, driver="e1000e", group=1)
    refused(t, A, f"IOMMU group 1 of {A} is not viable: it also holds "
            "0000:01:00.1, bound to the host driver e1000e")


@test
def refuse_group_shared(tmp):
    """a second device of the group, even on vfio-pci: shared"""
    t, c = host(tmp)
    t.vfio_loaded()
    t.pci("0000:01:00.1", driver="vfio-pci", group=1)
    refused(t, A, f"IOMMU group 1 of {A} is shared with 0000:01:00.1 "
            "(vfio-pci): a hotplug device must be alone in its group (put "
            "it behind a port with ACS)")


@test
def refuse_not_nvme(tmp):
    """a network card: not NVMe; disable is refused too"""
    t, c = host(tmp)
    n = "0000:03:00.0"
    t.pci(n, cls=0x020000, vendor=0x8086, device=0x10d3, driver="e1000e",
          group=3)
    rc, out, err = run(t, "enable", n)
    eq((rc, err), (2, f"nvme-passthru-host: enable {n}: refused: {n} is "
                   "not an NVMe controller: class 0x020000, not "
                   "0x010802\n"))
    eq(t.read("sys/bus/pci/drivers/e1000e/unbind"), "")
    rc, out, err = run(t, "disable", n)
    eq(rc, 2)


@test
def refuse_no_iommu(tmp):
    """no IOMMU: no group, enable refused"""
    t, c = host(tmp, iommu=False)
    refused(t, A, f"{A} has no IOMMU group: the host runs without an IOMMU "
            "(see 'nvme-passthru-host check')")


@test
def refuse_gone_after_list(tmp):
    """a device listed, then pulled out before enable"""
    t, c = host(tmp)
    eq(run_json(t, "list")[1]["devices"][0]["bdf"], A)
    shutil.rmtree(t.p(f"sys/bus/pci/devices/{A}"))
    eq(run(t, "enable", A), (2, "", f"nvme-passthru-host: enable {A}: "
                             f"refused: no PCI device {A} on this host\n"))
    eq(run_json(t, "enable", A)[:2],
       (2, {"operation": "enable", "device": A, "result": "refused",
            "message": f"no PCI device {A} on this host"}))


@test
def refuse_bad_arguments(tmp):
    """a malformed address, an unknown command, --vm with --pid"""
    t, c = host(tmp)
    eq(run(t, "enable", "01:00"), (2, "", "nvme-passthru-host: enable "
           "01:00: refused: '01:00' is not a PCI address (DDDD:BB:SS.F)\n"))
    eq(run(t, "frobnicate")[0], 2)
    eq(run(t, "check", "--vm", "x", "--pid", "1")[0], 2)
    eq(run(None, "--root", tmp + "/nonexistent", "list")[0], 2)


# ------------------------------------------------- enable, disable

@test
def enable_happy(tmp):
    """enable: driver_override, unbind, drivers_probe written; the
    kernel (FakeKernel) binds vfio-pci; verified, exit 0; a short
    address works; enabling again says so"""
    t, c = host(tmp)
    k = FakeKernel(t)
    try:
        rc, out, err = run(t, "enable", "01:00.0")
        eq((rc, out, err), (0, f"{A} is bound to vfio-pci (was nvme), "
                            "IOMMU group 1, /dev/vfio/1\n", ""))
        eq(t.read(f"sys/bus/pci/devices/{A}/driver_override"), "vfio-pci")
        eq(t.read("sys/bus/pci/drivers/nvme/unbind"), A)
        eq(k.probed, [A])
        eq(os.readlink(t.p(f"sys/bus/pci/devices/{A}/driver")),
           "../../drivers/vfio-pci")
        eq(t.exists("dev/vfio/1"), True)
        rc, j, err = run_json(t, "list")
        d = j["devices"][0]
        eq((d["driver"], d["passthrough"], d["driver-override"],
            d["controller"]), ("vfio-pci", "on", "vfio-pci", None))
        eq(run(t, "enable", A), (0, f"{A} was already bound to vfio-pci "
                                 "(IOMMU group 1, /dev/vfio/1)\n", ""))
        eq(k.probed, [A])
    finally:
        k.stop()


@test
def enable_kernel_did_not_bind(tmp):
    """the kernel does not move the driver link (no FakeKernel): failed,
    exit 1, and rolled back: driver_override cleared"""
    t, c = host(tmp)
    rc, out, err = run(t, "--timeout", "0.3", "enable", A)
    eq((rc, out), (1, ""))
    eq(err, f"nvme-passthru-host: enable {A}: failed: the kernel did not "
       f"bind {A} to vfio-pci within 0.3 s: it is bound to nvme; "
       "driver_override cleared\n")
    eq(t.read(f"sys/bus/pci/devices/{A}/driver_override"), "\n")
    eq(t.read("sys/bus/pci/drivers/nvme/unbind"), A)


@test
def enable_device_vanishes(tmp):
    """the device disappears while it is rebound: failed, exit 1"""
    t, c = host(tmp)
    k = FakeKernel(t, mode="vanish")
    try:
        rc, j, err = run_json(t, "enable", A)
        eq((rc, j["result"], j["message"]),
           (1, "failed", f"{A} disappeared while it was rebound"))
    finally:
        k.stop()


@test
def disable_happy(tmp):
    """disable: override cleared, vfio-pci/unbind, probed back to nvme"""
    t, c = host(tmp)
    k = FakeKernel(t)
    try:
        eq(run(t, "enable", A)[0], 0)
        rc, out, err = run(t, "disable", A)
        eq((rc, out, err), (0, f"{A} is bound to nvme again\n", ""))
        eq(t.read(f"sys/bus/pci/devices/{A}/driver_override"), "\n")
        eq(t.read("sys/bus/pci/drivers/vfio-pci/unbind"), A)
        eq(k.probed, [A, A])
        eq(os.readlink(t.p(f"sys/bus/pci/devices/{A}/driver")),
           "../../drivers/nvme")
        eq(t.exists("dev/vfio/1"), False)
        eq(run(t, "disable", A), (0, f"{A} was not passed through (driver "
                                  "nvme)\n", ""))
    finally:
        k.stop()


@test
def disable_refused_in_vm(tmp):
    """disable while QEMU has /dev/vfio/N open: refused"""
    t = Tree(tmp)
    t.iommu_on()
    t.pci(A, group=5, driver="vfio-pci")
    t.process(999, "qemu-system-x86", fds=["/dev/vfio/vfio", "/dev/vfio/5"])
    eq(run(t, "disable", A), (2, "", f"nvme-passthru-host: disable {A}: "
       f"refused: {A} is in use by a VM: /dev/vfio/5 is open in process "
       "999 (qemu-system-x86); remove it from the VM first (device_del)\n"))
    eq(t.read("sys/bus/pci/drivers/vfio-pci/unbind"), "")


@test
def persist(tmp):
    """--persist writes the udev rule (vendor:device and address), list
    shows it, disable --persist removes it"""
    t, c = host(tmp)
    t.pci(B, group=2, device=0x0a54, vendor=0x8086)
    t.controller(B, ctrl="nvme1", devnum="240:1")
    k = FakeKernel(t)
    rules = "etc/udev/rules.d/60-nvme-passthru-host.rules"
    try:
        rc, out, err = run(t, "enable", "--persist", A)
        eq((rc, out), (0, f"{A} is bound to vfio-pci (was nvme), IOMMU "
                       "group 1, /dev/vfio/1; kept across reboots\n"))
        eq(run(t, "enable", "--persist", B)[0], 0)
        lines = t.read(rules).splitlines()
        eq(lines[2:], [
            f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{A}", '
            'ATTR{vendor}=="0x144d", ATTR{device}=="0xa808", '
            'ATTR{driver_override}="vfio-pci", '
            f'RUN+="{TOOL} enable {A}"',
            f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{B}", '
            'ATTR{vendor}=="0x8086", ATTR{device}=="0x0a54", '
            'ATTR{driver_override}="vfio-pci", '
            f'RUN+="{TOOL} enable {B}"'])
        eq(run_json(t, "list")[1]["devices"][0]["persistent"], True)
        eq(run(t, "disable", "--persist", A)[1],
           f"{A} is bound to nvme again; no longer passed through at "
           "boot\n")
        eq(len(t.read(rules).splitlines()), 3)
        eq(run(t, "disable", "--persist", B)[0], 0)
        eq(t.exists(rules), False)
    finally:
        k.stop()


@test
def enable_unbound(tmp):
    """a device no driver has: nothing to unbind; override and probe"""
    t = Tree(tmp)
    t.iommu_on()
    t.pci(A, group=1, driver=None)
    k = FakeKernel(t)
    try:
        eq(run(t, "enable", A), (0, f"{A} is bound to vfio-pci (was "
                                 "unbound), IOMMU group 1, /dev/vfio/1\n",
                                 ""))
        eq(t.read("sys/bus/pci/drivers/nvme/unbind"), "")
        eq(k.probed, [A])
    finally:
        k.stop()


@test
def enable_without_vfio_driver(tmp):
    """vfio-pci not loaded (and no modprobe in a synthetic tree): failed,
    exit 1, before anything is written"""
    t, c = host(tmp)
    shutil.rmtree(t.p("sys/bus/pci/drivers/vfio-pci"))
    eq(run(t, "enable", A), (1, "", f"nvme-passthru-host: enable {A}: "
       "failed: the vfio-pci driver is not loaded and 'modprobe vfio-pci' "
       "did not load it\n"))
    eq(t.read(f"sys/bus/pci/devices/{A}/driver_override"), "")


@test
def refuse_group_member_without_driver(tmp):
    """a second device of the group without a driver: shared, refused"""
    t, c = host(tmp)
    t.pci("0000:01:00.1", cls=0x088000, driver=None, group=1)
    refused(t, A, f"IOMMU group 1 of {A} is shared with 0000:01:00.1 (no "
            "driver): a hotplug device must be alone in its group (put it "
            "behind a port with ACS)")


@test
def check_text_fix_lines(tmp):
    """check for people: a FAIL line, then its fix indented under it"""
    t = Tree(tmp)
    t.iommu_on(vfio=False)
    rc, out, err = run(t, "check")
    eq(rc, 1)
    lines = out.splitlines()
    i = lines.index("FAIL  vfio-modules         not loaded: vfio vfio_pci "
                    "vfio_iommu_type1")
    eq(lines[i + 1], "                           fix: modprobe vfio-pci "
       "(enable does it too); at every boot: echo vfio-pci > "
       "/etc/modules-load.d/vfio-pci.conf")
    eq(lines[-1], "2 checks failed: fix them before passing an NVMe through")


# ------------------------------------------------------------- check

def check_json(t, *args):
    rc, j, err = run_json(t, "check", *args)
    return rc, {c["name"]: (c["result"], c["detail"], c["fix"])
                for c in j["checks"]}, j


@test
def check_happy(tmp):
    """a host that can pass through: every check ok, exit 0"""
    t, c = host(tmp)
    rc, out, err = run(t, "check")
    eq((rc, err), (0, ""))
    eq(out.splitlines(), [
        "ok    iommu-hardware       Intel VT-d (ACPI DMAR table)",
        "ok    iommu                on: dmar0",
        "ok    interrupt-remapping  on (IR- interrupt chips in "
        "/proc/interrupts)",
        "ok    vfio-modules         vfio, vfio_pci, vfio_iommu_type1 loaded",
        "ok    vfio-node            /dev/vfio/vfio exists",
        f"ok    nvme {A}    free, alone in IOMMU group 1: ready for "
        f"'nvme-passthru-host enable {A}'",
        "the host can pass NVMe controllers through"])
    rc, checks, j = check_json(t)
    eq((rc, j["failed"], sorted(checks)),
       (0, 0, ["interrupt-remapping", "iommu", "iommu-hardware",
               f"nvme {A}", "vfio-modules", "vfio-node"]))


@test
def check_no_iommu(tmp):
    """DMAR table, IOMMU off: the fix is intel_iommu=on; AMD: remove
    amd_iommu=off; nothing: the firmware; exit 1"""
    t = Tree(tmp)
    t.write("sys/firmware/acpi/tables/DMAR", "")
    t.pci(A)
    t.controller(A)
    rc, checks, j = check_json(t)
    eq(rc, 1)
    eq(checks["iommu-hardware"][0], "ok")
    eq(checks["iommu"][:2], ("fail", "off: /sys/class/iommu is empty "
                             "(kernel command line: BOOT_IMAGE=/vmlinuz "
                             "root=UUID=1 ro)"))
    eq(checks["iommu"][2], "add intel_iommu=on (and iommu=pt for host DMA "
       "speed) to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, "
       "reboot")
    eq(checks[f"nvme {A}"][0], "fail")
    eq(checks[f"nvme {A}"][2], "turn the IOMMU on (above)")
    eq((checks["vfio-modules"][0], checks["vfio-node"][0],
        checks["interrupt-remapping"][0]), ("fail", "fail", "fail"))
    os.unlink(t.p("sys/firmware/acpi/tables/DMAR"))
    t.write("sys/firmware/acpi/tables/IVRS", "")
    eq(check_json(t)[1]["iommu"][2][:42],
       "AMD's IOMMU is on by default: remove amd_i")
    os.unlink(t.p("sys/firmware/acpi/tables/IVRS"))
    rc, checks, j = check_json(t)
    eq(checks["iommu-hardware"][0:2], ("fail", "the firmware reports no "
                                       "IOMMU (no DMAR or IVRS ACPI "
                                       "table)"))
    rc, out, err = run(t, "check")
    eq(out.splitlines()[-1], "6 checks failed: fix them before passing an "
       "NVMe through")


@test
def check_intremap(tmp):
    """no interrupt remapping: fail; allowed unsafely: warn, exit 0"""
    t = Tree(tmp)
    t.iommu_on(intremap=False)
    rc, checks, j = check_json(t)
    eq((rc, checks["interrupt-remapping"][0]), (1, "fail"))
    t.write("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
            "Y\n")
    rc, checks, j = check_json(t)
    eq((rc, checks["interrupt-remapping"][0], checks["nvme"][0]),
       (0, "warn", "warn"))


@test
def check_group_and_nodes(tmp):
    """a shared group fails its device; a host disk is fine; a vfio-pci
    device without its node fails"""
    t, c = host(tmp)
    t.pci("0000:01:00.1", cls=0x0c0330, driver="xhci_hcd", group=1)
    t.pci(B, group=2)
    t.mount("259:7", "/dev/nvme1n1", "/")
    c1 = t.controller(B, ctrl="nvme1", devnum="240:1")
    t.namespace(c1, "nvme1n1", "259:7")
    t.pci("0000:05:00.0", group=6, driver="vfio-pci")
    os.unlink(t.p("dev/vfio/6"))
    rc, checks, j = check_json(t)
    eq(rc, 1)
    eq(checks[f"nvme {A}"][:2], ("fail", f"IOMMU group 1 of {A} is not "
                                 "viable: it also holds 0000:01:00.1, "
                                 "bound to the host driver xhci_hcd"))
    eq(checks[f"nvme {B}"][:2], ("ok", "used by the host (/dev/nvme1n1 is "
                                 "mounted on / (the root file system)): "
                                 "not passed through"))
    eq(checks["nvme 0000:05:00.0"][:2], ("fail", "bound to vfio-pci, but "
                                         "/dev/vfio/6 does not exist"))


@test
def check_qemu_memlock(tmp):
    """--pid: a 64 KiB memlock limit against -m 4G fails with the exact
    need; unlimited, CAP_IPC_LOCK and enough pass; --vm finds libvirt's
    pid file; a missing VM or process is refused"""
    t, c = host(tmp)
    qemu = ["qemu-system-x86_64", "-machine", "q35", "-m", "4G"]
    t.process(300, "qemu-system-x86", limits_memlock="65536", cmdline=qemu)
    rc, checks, j = check_json(t, "--pid", "300")
    eq(rc, 1)
    eq(checks["memlock"], ("fail", "QEMU (pid 300) may lock 0 MiB, but VFIO "
                           "pins all guest RAM: it needs 5120 MiB (guest "
                           "RAM + 1 GiB)", "raise it: prlimit --pid 300 "
                           "--memlock=5368709120 (now), LimitMEMLOCK="
                           "infinity in QEMU's systemd unit, or libvirt's "
                           "<memoryBacking><locked/></memoryBacking>"))
    t.process(301, "qemu", limits_memlock="unlimited", cmdline=qemu)
    eq(check_json(t, "--pid", "301")[1]["memlock"][:2],
       ("ok", "QEMU (pid 301) may lock unlimited memory"))
    t.process(302, "qemu", limits_memlock="65536",
              cap_eff="0000000000004000", cmdline=qemu)
    eq(check_json(t, "--pid", "302")[1]["memlock"][0], "ok")
    t.process(303, "qemu", limits_memlock=str(6 << 30),
              cmdline=["qemu", "-m", "size=2048,slots=0"])
    eq(check_json(t, "--pid", "303")[1]["memlock"][:2],
       ("ok", "QEMU (pid 303) may lock 6144 MiB, guest RAM + 1 GiB is "
        "3072 MiB"))
    t.write("run/libvirt/qemu/vm1.pid", "300\n")
    eq(check_json(t, "--vm", "vm1")[1]["memlock"][0], "fail")
    eq(run(t, "check", "--vm", "nosuch"),
       (2, "", "nvme-passthru-host: check: refused: no running libvirt "
        f"domain 'nosuch' (cannot read {tmp}/run/libvirt/qemu/nosuch.pid): "
        "pass --pid\n"))
    eq(run(t, "check", "--pid", "4444")[0], 2)


@test
def check_qemu_access(tmp):
    """a QEMU running as uid 64055 cannot open a root-owned 0600 group
    node: fail, with the chown"""
    t = Tree(tmp)
    t.iommu_on()
    t.pci(A, group=1, driver="vfio-pci")
    os.chmod(t.p("dev/vfio/1"), 0o600)
    os.chmod(t.p("dev/vfio/vfio"), 0o666)
    t.process(400, "qemu", uid=64055, cmdline=["qemu"])
    rc, j, err = run_json(t, "check", "--pid", "400")
    acc = [c for c in j["checks"] if c["name"] == "qemu-access"]
    eq([(c["result"], c["detail"]) for c in acc], [
        ("ok", "QEMU (uid 64055) can open /dev/vfio/vfio"),
        ("fail", "QEMU runs as uid 64055 and cannot open /dev/vfio/1 "
         "(owner 0, mode 600)")])
    eq(acc[1]["fix"], "chown 64055 /dev/vfio/1 (libvirt does this for a "
       "managed <hostdev>)")


@test
def root_from_environment(tmp):
    """NVME_PASSTHRU_HOST_ROOT does what --root does"""
    t, c = host(tmp)
    rc, out, err = run(None, "--json", "list",
                       env={"NVME_PASSTHRU_HOST_ROOT": tmp})
    eq((rc, json.loads(out)["devices"][0]["bdf"]), (0, A))


# ------------------------------------------------------------- watch

def uevent(action, subsystem, **kv):
    lines = [f"ACTION={action}", f"SUBSYSTEM={subsystem}"]
    lines += [f"{k.upper()}={v}" for k, v in kv.items()]
    return "\n".join(lines) + "\n\n"


def pci_add(bdf, cls="10802", pci_id="144D:A808"):
    return uevent("add", "pci", devpath=f"/devices/pci0000:00/0000:00:1c.0/"
                  f"{bdf}", pci_class=cls, pci_id=pci_id, pci_slot_name=bdf)


def watch_setup(tmp, policy, ports=None, mode="complete", **kw):
    t = Tree(tmp)
    t.iommu_on()
    qmp = FakeQmp(tmp + "/vm1.qmp", ports or [
        {"id": "rp1", "state": "present", "device": "nvme-a",
         "transport": "vfio", "backend": "0000:09:00.0"},
        {"id": "rp2", "state": "empty"}, {"id": "rp3", "state": "empty"}],
        mode=mode, **kw)
    t.write("policy", policy.replace("QMP", qmp.path))
    return t, qmp


def watch(t, events, *args):
    t.write("uevents", events)
    rc, j, err = None, None, None
    e = dict(os.environ)
    p = subprocess.run([TOOL, "--root", t.root, "--json", *args, "watch",
                        "--policy", t.p("policy"), "--uevents",
                        t.p("uevents")], capture_output=True, text=True,
                       timeout=60, env=e)
    steps = [json.loads(line) for line in p.stdout.splitlines()]
    return p.returncode, [(s["device"], s["step"], s["message"])
                          for s in steps], p.stderr


def insert(t, bdf=A, group=1, slot="3", **kw):
    """A drive put into a slot: the PCI device, nvme bound to it"""
    t.pci(bdf, group=group, slot=slot)
    return t.controller(bdf, **kw)


@test
def watch_places_allowed_drive(tmp):
    """watch through a fifo: a drive inserted after the start, allowed by
    slot, is enabled and device_add'ed as vfio-pci on the first free
    port (rp2); a non-NVMe device and other events are left alone; each
    step printed with its time"""
    t, qmp = watch_setup(tmp, "# the test VM\nvm vm1\nqmp QMP\n"
                         "allow slot=3\n")
    k = FakeKernel(t)
    fifo = t.p("uevents")
    os.mkfifo(fifo)
    p = subprocess.Popen([TOOL, "--root", t.root, "watch", "--policy",
                          t.p("policy"), "--uevents", fifo],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        with open(fifo, "w") as f:
            first = p.stdout.readline()
            t.pci("0000:06:00.0", cls=0x020000, driver="e1000e", group=6)
            f.write(pci_add("0000:06:00.0", cls="20000"))
            insert(t)
            f.write(uevent("add", "block", devname="sda"))
            f.write(pci_add(A))
        out, err = p.communicate(timeout=60)
    finally:
        k.stop()
        qmp.stop()
    eq((p.returncode, err), (0, ""))
    lines = [first] + out.splitlines()
    stamp = r"^\d\d:\d\d:\d\d\.\d\d\d \+\d+\.\d\d\ds "
    for line in lines:
        if not re.match(stamp, line):
            raise AssertionError(f"no time stamp: {line!r}")
    got = [re.sub(stamp, "", line).rstrip() for line in lines]
    eq(got[1:4], [
        "0000:06:00.0 ignored: not an NVMe controller (class 0x020000): "
        "left alone",
        f"{A} inserted: NVMe 144d:a808, slot 3, model Samsung SSD 970 EVO "
        "Plus 1TB, serial S4EWNX0R123456",
        f"{A} enabled: {A} is bound to vfio-pci (was nvme), IOMMU group 1, "
        f"/dev/vfio/1 ({got[3].rsplit('(', 1)[1]}"])
    eq(got[4], f"{A} port: VM vm1: free port rp2, device_add vfio-pci id "
       "hostnvme-0000-01-00-0")
    if not re.match(rf"{A} added: VM vm1: add completed on port rp2 "
                    r"\(QEMU: 27 ms\), \d+ ms after device_add$", got[5]):
        raise AssertionError(got[5])
    eq(len(got), 6)
    eq(qmp.device_adds(), [{"driver": "vfio-pci",
                            "id": "hostnvme-0000-01-00-0", "bus": "rp2",
                            "host": A}])
    eq(qmp.admissions(), qmp.device_adds())
    eq([c["execute"] for c in qmp.commands][-2:],
       ["query-passthru-hotplug-admission", "device_add"])
    eq(os.readlink(t.p(f"sys/bus/pci/devices/{A}/driver")),
       "../../drivers/vfio-pci")


def watch_once(tmp, policy, **kw):
    """watch with POLICY places drive A, inserted once, with the fake QMP
    server set up by KW: (rc, steps, qmp, tree)"""
    t, qmp = watch_setup(tmp, policy, **kw)
    k = FakeKernel(t)
    try:
        insert(t)
        rc, steps, err = watch(t, pci_add(A))
    finally:
        k.stop()
        qmp.stop()
    return rc, steps, qmp, t


def watch_admission(tmp, **kw):
    """watch places drive A with the fake QMP server set up by KW"""
    rc, steps, qmp, _ = watch_once(tmp, "vm vm1\nqmp QMP\nallow slot=3\n",
                                   **kw)
    return rc, steps, qmp


@test
def watch_not_admitted(tmp):
    """QEMU's admission query refuses the device on the free port: no
    device_add; every reason printed, with its code; exit 1, the device
    stays on vfio-pci"""
    refusals = [
        ("operation-pending", "another passthrough hotplug operation is "
         "pending: add of 'nvme-b' on port 'rp3'"),
        ("iommu-group-not-viable", f"vfio-pci 'hostnvme-0000-01-00-0': "
         f"IOMMU group 1 of {A} also holds 0000:01:00.1: pass through a "
         "device that is alone in its group")]
    rc, steps, qmp = watch_admission(tmp, refusals=refusals)
    eq((rc, [s[1] for s in steps]),
       (1, ["watching", "inserted", "enabled", "port", "not-admitted"]))
    eq(steps[-1][2], "VM vm1: QEMU would refuse device_add on port rp2: "
       + "; ".join(f"{c}: {m}" for c, m in refusals)
       + "; the device stays on vfio-pci")
    eq(qmp.device_adds(), [])
    eq(qmp.admissions(), [{"driver": "vfio-pci",
                           "id": "hostnvme-0000-01-00-0", "bus": "rp2",
                           "host": A}])


@test
def watch_qemu_without_admission(tmp):
    """a QEMU without the admission query (CommandNotFound): watch goes
    on with device_add, which says for itself"""
    rc, steps, qmp = watch_admission(tmp, admission=False)
    eq((rc, [s[1] for s in steps]),
       (0, ["watching", "inserted", "enabled", "port", "added"]))
    eq(len(qmp.device_adds()), 1)


@test
def watch_matches_identity(tmp):
    """allow lines match id, model and serial (wildcards, quotes); all
    keys of a line must match; JSON steps"""
    rc, steps, qmp, t = watch_once(
        tmp, 'vm vm1\nqmp QMP\nallow id=144d:a808 serial=OTHER*\n'
        'allow model="Samsung SSD 970*" serial=S4EW*\n')
    eq((rc, [s[1] for s in steps]),
       (0, ["watching", "inserted", "enabled", "port", "added"]))
    eq(steps[0][2], f"VM vm1 (QMP {tmp}/vm1.qmp), 2 allow lines; uevents "
       f"from {t.p('uevents')}")


@test
def watch_waits_for_identity(tmp):
    """allowed by serial, a drive whose identity the nvme driver has not
    read yet (the kernel shows "(efault)" at the add uevent): watch waits
    for it, then places the drive"""
    t, qmp = watch_setup(tmp, "vm vm1\nqmp QMP\nallow serial=S4EW*\n")
    k = FakeKernel(t)
    insert(t, model="(efault)", serial="(efault)", fw="(efault)")
    later = threading.Timer(0.5, lambda: t.controller(A))
    try:
        later.start()
        rc, steps, err = watch(t, pci_add(A))
    finally:
        later.join()
        k.stop()
        qmp.stop()
    eq((rc, steps[1], [s[1] for s in steps[2:]]), (0, (
        A, "inserted", "NVMe 144d:a808, slot 3, model Samsung SSD 970 EVO "
        "Plus 1TB, serial S4EWNX0R123456"), ["enabled", "port", "added"]))


@test
def watch_leaves_unlisted_drive(tmp):
    """a drive no allow line matches: left alone, nothing written, no
    QMP command"""
    t, qmp = watch_setup(tmp, "vm vm1\nqmp QMP\nallow slot=7\n"
                         "allow id=8086:*\n")
    try:
        insert(t)
        rc, steps, err = watch(t, pci_add(A))
    finally:
        qmp.stop()
    eq((rc, steps[1:]), (0, [
        (A, "inserted", "NVMe 144d:a808, slot 3, model Samsung SSD 970 EVO "
         "Plus 1TB, serial S4EWNX0R123456"),
        (A, "not-allowed", "no allow line of the policy matches: left "
         "alone")]))
    eq(t.read(f"sys/bus/pci/devices/{A}/driver_override"), "")
    eq(qmp.commands, [])


@test
def watch_leaves_host_drive(tmp):
    """an allowed drive the host uses (its file system got mounted):
    left alone with the reason, exit 0"""
    t, qmp = watch_setup(tmp, "vm vm1\nqmp QMP\nallow slot=3\n")
    try:
        c = insert(t)
        t.namespace(c, "nvme0n1", "259:0")
        t.mount("259:0", "/dev/nvme0n1", "/srv")
        rc, steps, err = watch(t, pci_add(A))
    finally:
        qmp.stop()
    eq((rc, steps[-1]), (0, (A, "refused", f"left alone: {A} is in use by "
                             "the host: /dev/nvme0n1 is mounted on /srv")))
    eq(t.read("sys/bus/pci/drivers/nvme/unbind"), "")
    eq(qmp.commands, [])


@test
def watch_leaves_drive_of_another_vm(tmp):
    """a drive already on vfio-pci whose group another QEMU holds open
    (another watch placed it): left alone, no device_add"""
    t, qmp = watch_setup(tmp, "vm vm1\nqmp QMP\nallow slot=3\n")
    try:
        t.pci(A, group=1, slot="3", driver="vfio-pci")
        t.process(500, "qemu-system-x86", fds=["/dev/vfio/vfio",
                                               "/dev/vfio/1"])
        rc, steps, err = watch(t, pci_add(A))
    finally:
        qmp.stop()
    steps = [(d, s, re.sub(r"\(\d+ ms\)$", "(N ms)", m))
             for d, s, m in steps]
    eq((rc, steps[2:]), (0, [
        (A, "enabled", f"{A} was already bound to vfio-pci (IOMMU group 1, "
         "/dev/vfio/1) (N ms)"),
        (A, "refused", "left alone: /dev/vfio/1 is open in process 500 "
         "(qemu-system-x86) (another VM has it)")]))
    eq(qmp.commands, [])


@test
def watch_add_fails(tmp):
    """the guest never enables the device: failed with QEMU's reason,
    exit 1; device_add refused by QEMU: failed; no free port, or no VM
    behind the socket: failed, the device stays on vfio-pci"""
    for mode, want in (
            ("fail", "VM vm1: add failed on port rp2 (QEMU: 5000 ms): the "
             "guest did not enable the device within 5000 ms"),
            ("error", "VM vm1: device_add: vfio 0000:01:00.0: group 1 is "
             "not viable; the device stays on vfio-pci")):
        d = f"{tmp}/{mode}"
        os.makedirs(d)
        t, qmp = watch_setup(d, "vm vm1\nqmp QMP\nallow slot=3\n",
                             mode=mode)
        k = FakeKernel(t)
        try:
            insert(t)
            rc, steps, err = watch(t, pci_add(A))
        finally:
            k.stop()
            qmp.stop()
        eq((rc, steps[-1]), (1, (A, "failed", want)), mode)
    d = f"{tmp}/full"
    os.makedirs(d)
    t, qmp = watch_setup(d, "vm vm1\nqmp QMP\nallow slot=3\n",
                         ports=[{"id": "rp1", "state": "adding"}])
    k = FakeKernel(t)
    try:
        insert(t)
        rc, steps, err = watch(t, pci_add(A))
    finally:
        k.stop()
        qmp.stop()
    eq((rc, steps[-1]), (1, (A, "failed", "VM vm1: no free "
                             "pcie-hotplug-passthru port in the VM "
                             "(query-passthru-hotplug); the device stays "
                             "on vfio-pci")))
    eq([c["execute"] for c in qmp.commands],
       ["qmp_capabilities", "query-passthru-hotplug"])
    d = f"{tmp}/novm"
    os.makedirs(d)
    t = Tree(d)
    t.iommu_on()
    t.write("policy", f"vm vm1\nqmp {d}/gone.qmp\nallow slot=3\n")
    k = FakeKernel(t)
    try:
        insert(t)
        rc, steps, err = watch(t, pci_add(A))
    finally:
        k.stop()
    eq((rc, steps[-1]), (1, (A, "failed", f"VM vm1: cannot connect to QMP "
                             f"{d}/gone.qmp: No such file or directory; the "
                             "device stays on vfio-pci")))


@test
def watch_netlink(tmp):
    """without --uevents, watch reads the kernel's NETLINK_KOBJECT_UEVENT
    socket: a synthetic "add" written to the uevent file of this
    machine's first non-NVMe PCI device reaches it, and the device is
    left alone (needs root and a PCI device)"""
    devs = sorted(os.listdir("/sys/bus/pci/devices"))
    dev = next((d for d in devs if open(f"/sys/bus/pci/devices/{d}/class")
                .read().strip() != "0x010802"), None)
    if not dev:
        raise AssertionError("this machine has no non-NVMe PCI device to "
                             "send a uevent for")
    with open(tmp + "/policy", "w") as f:
        f.write("vm none\nqmp /nonexistent\nallow slot=no-such-slot\n")
    p = subprocess.Popen([TOOL, "--json", "watch", "--policy",
                          tmp + "/policy"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline() or "{}")
        eq(first.get("step"), "watching", p.stderr.read()
           if not first else "first step")
        with open(f"/sys/bus/pci/devices/{dev}/uevent", "w") as f:
            f.write("add")
        r, _, _ = select.select([p.stdout], [], [], 10)
        if not r:
            raise AssertionError(f"no step within 10 s of the uevent of "
                                 f"{dev}")
        s = json.loads(p.stdout.readline())
        cls = open(f"/sys/bus/pci/devices/{dev}/class").read().strip()
        eq((s["device"], s["step"], s["message"]),
           (dev, "ignored", f"not an NVMe controller (class {cls}): left "
            "alone"))
    finally:
        p.kill()
        p.wait()


@test
def watch_udevadm_format(tmp):
    """--uevents takes what udevadm monitor --kernel --property prints;
    an allowed drive whose group is not viable is refused, exit 0"""
    t, qmp = watch_setup(tmp, "vm vm1\nqmp QMP\nallow id=144d:*\n")
    try:
        insert(t)
        t.pci("0000:01:00.1", cls=0x020000, driver="e1000e", group=1)
        rc, steps, err = watch(t, (
            "monitor will print the received events for:\n"
            "KERNEL - the kernel uevent\n\n"
            "KERNEL[1234.567890] add      /devices/pci0000:00/0000:00:1c.0/"
            f"{A} (pci)\nACTION=add\nDEVPATH=/devices/pci0000:00/"
            f"0000:00:1c.0/{A}\nSUBSYSTEM=pci\nPCI_CLASS=10802\n"
            f"PCI_ID=144D:A808\nPCI_SLOT_NAME={A}\nSEQNUM=4321\n\n"))
    finally:
        qmp.stop()
    eq((rc, steps[1:]), (0, [
        (A, "inserted", "NVMe 144d:a808, slot 3, model Samsung SSD 970 EVO "
         "Plus 1TB, serial S4EWNX0R123456"),
        (A, "refused", f"left alone: IOMMU group 1 of {A} is not viable: it "
         "also holds 0000:01:00.1, bound to the host driver e1000e")]))
    eq(qmp.commands, [])


@test
def watch_bad_policy(tmp):
    """a policy with an unknown key, without qmp, or missing: refused"""
    t = Tree(tmp)
    t.write("policy", "qmp /x\nallow slot=3\nallow colour=red\n")
    eq(run(t, "watch", "--policy", t.p("policy"), "--uevents", "/dev/null"),
       (2, "", f"nvme-passthru-host: watch: {t.p('policy')}:3: unknown key "
        "'colour' (slot, id, model, serial)\n"))
    t.write("policy", "allow slot=3\n")
    eq(run(t, "watch", "--policy", t.p("policy"))[2],
       f"nvme-passthru-host: watch: {t.p('policy')}: needs a 'qmp PATH' "
       "line and at least one 'allow' line\n")
    eq(run(t, "watch", "--policy", tmp + "/none")[0], 2)
    eq(run(t, "watch")[0], 2)


if __name__ == "__main__":
    sys.exit(tap.main(TOOL, "nph-", "build"))
