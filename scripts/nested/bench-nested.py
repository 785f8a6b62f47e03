#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make bench, kernel-VFIO part: host-side removal of a device L2 holds,
this project (vfio-nvme on pcie-hotplug-passthru) against upstream
(vfio-pci on a stock pcie-root-port), in the nested bed
(tests/nested/bed.py: L0 TCG + intel-iommu, L1 vfio-pci, L2 qtest).

  d  L1: echo 1 > /sys/bus/pci/devices/BDF/remove while L2 holds BDF
  e  L0: device_del of the NVMe in L1's hotplug slot

Measured: when the host's operation returns (L1's write; L0's
DEVICE_DELETED) and when L2 let go of the device (its DEVICE_DELETED).
L2's guest is qtest: it never answers an ACPI eject request, like a
guest that is hung, busy or gone.  What does not return within --wait
seconds is reported as blocked; L2 is then killed and the time until
the host's operation returns after that is given.

Output: a Markdown table on stdout and in build/bench/nested.md.
Usage: scripts/nested/bench-nested.py [--wait S]
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True
TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(TOP, "tests", "nested"))
import bed as B  # noqa: E402
import qnvme as Q  # noqa: E402

h = B.h

CONFIGS = {
    "fork": ("vfio-nvme", "pcie-hotplug-passthru", True),
    # the same VM (UEFI pflash, locked memory) but for port and frontend
    "upstream": ("vfio-pci", "pcie-root-port", True),
}


def setup(bed, kind):
    driver, port, policy = CONFIGS[kind]
    bdf = bed.slot_bdf(1)
    bed.bind(bdf, "vfio-pci")
    l2 = bed.start_l2(ports=1, port_driver=port, policy=policy)
    Q.number_bus(l2.qt, 1)
    l2.qmp.cmd("device_add", driver=driver, id="nvme0", bus="rp1", host=bdf)
    Q.guest_enable(l2.qt, 1)
    Q.Nvme(l2.qt, 1).start().identify()
    return bdf, l2


def deleted(l2, since):
    for t, e in l2.qmp.events[since:]:
        if e["event"] == "DEVICE_DELETED" and \
                e.get("data", {}).get("device") == "nvme0":
            return t
    return None


def step_d(bed, kind, wait):
    bdf, l2 = setup(bed, kind)
    m = l2.qmp.mark()
    t0 = h.now()
    mark = bed.bg("rm", "echo 1 > /sys/bus/pci/devices/%s/remove" % bdf)
    r = {"what": "L1 remove"}
    try:
        rc, took, _ = bed.wait_bg("rm", mark, wait)
        r["host"] = "%.2f s" % took
    except h.HarnessError:
        r["host"] = "blocked > %d s" % wait
    td = deleted(l2, m)
    r["l2"] = ("DEVICE_DELETED after %.2f s" % (td - t0)) if td else \
        "still holds it after %.0f s" % (h.now() - t0)
    if r["host"].startswith("blocked"):
        tk = h.now()
        bed.agent.call("l2-kill")
        try:
            rc, took, _ = bed.wait_bg("rm", mark, 60)
            r["host"] += "; returns %.2f s after L2 is killed" % (h.now() - tk)
        except h.HarnessError:
            r["host"] += "; still blocked 60 s after L2 was killed"
    l2.stop()
    bed.sh("echo 1 > /sys/bus/pci/rescan")
    h.wait_for(lambda: bed.ok("below 10"), 30, "NVMe back", step=0.5)
    return r


def step_e(bed, kind, wait, n):
    bdf, l2 = setup(bed, kind)
    q0 = bed.qmp
    m, m0 = l2.qmp.mark(), q0.mark()
    l0id = bed.l0_nvme
    t0 = h.now()
    q0.cmd("device_del", id=l0id)
    r = {"what": "L0 device_del"}
    try:
        td, _, _ = q0.wait_event(
            lambda e: e["event"] == "DEVICE_DELETED"
            and e.get("data", {}).get("device") == l0id, wait, m0)
        r["host"] = "%.2f s" % (td - t0)
    except h.HarnessError:
        r["host"] = "blocked > %d s" % wait
    t2 = deleted(l2, m)
    r["l2"] = ("DEVICE_DELETED after %.2f s" % (t2 - t0)) if t2 else \
        "still holds it after %.0f s" % (h.now() - t0)
    if r["host"].startswith("blocked"):
        tk = h.now()
        bed.agent.call("l2-kill")
        try:
            td, _, _ = q0.wait_event(
                lambda e: e["event"] == "DEVICE_DELETED"
                and e.get("data", {}).get("device") == l0id, 60, m0)
            r["host"] += "; returns %.2f s after L2 is killed" % (td - tk)
        except h.HarnessError:
            r["host"] += "; still blocked 60 s after L2 was killed"
    l2.stop()
    # a new NVMe for what comes next
    img = bed.p("nvme-b%d.img" % n)
    h.make_image(img, 64)
    q0.cmd("blockdev-add", driver="raw", **{"node-name": "b%d" % n},
           file={"driver": "file", "filename": img})
    bed.l0_nvme = "l0nvme-b%d" % n
    q0.cmd("device_add", driver="nvme", id=bed.l0_nvme, bus="l0rp1",
           serial="b%d" % n, drive="b%d" % n)
    h.wait_for(lambda: bed.ok("below 10"), 60, "new NVMe in L1", step=0.5)
    h.wait_for(lambda: bed.device_info(bed.slot_bdf(1))[1] == "nvme", 30,
               "nvme bound", step=0.5)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wait", type=int, default=20)
    ap.add_argument("--configs", default="fork,upstream")
    args = ap.parse_args()
    for line in B.build():
        print(line)
    bed = B.Bed("bench").start()
    bed.l0_nvme = "l0nvme1"
    rows = []
    try:
        n = 0
        for kind in args.configs.split(","):
            for step in ("d", "e"):
                n += 1
                try:
                    r = step_d(bed, kind, args.wait) if step == "d" else \
                        step_e(bed, kind, args.wait, n)
                except Exception as e:  # noqa: BLE001 - reported
                    r = {"what": step, "host": "error: %s" % e, "l2": ""}
                rows.append((kind, step, r))
                print("%s %s: %s" % (kind, step, r), flush=True)
    finally:
        bed.stop()
    out = ["## Host-side removal of a device L2 holds (nested kernel VFIO, TCG)",
           "", "L2's guest never answers an eject request (qtest); wait "
           "%d s." % args.wait, "",
           "| config | step | host operation returns | L2 lets go |",
           "|---|---|---|---|"]
    names = {"fork": "this project: vfio-nvme on pcie-hotplug-passthru",
             "upstream": "upstream: vfio-pci on pcie-root-port"}
    for kind, step, r in rows:
        out.append("| %s | %s (%s) | %s | %s |" % (names[kind], step, r["what"],
                                                   r["host"], r["l2"]))
    text = "\n".join(out)
    print(text)
    d = os.path.join(B.BUILD, "bench")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "nested.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
