#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make bench, kernel-VFIO part, in the nested bed (tests/nested/bed.py:
L0 TCG + intel-iommu, L1 vfio-pci, L2 qtest): this project (vfio-nvme on
pcie-hotplug-passthru) against upstream (vfio-pci on a stock
pcie-root-port).

Hot-add, interleaved: ONE L2 (the passthrough policy's UEFI pflash and
locked memory) with rp1 a pcie-hotplug-passthru port and rp2 a stock
pcie-root-port; the same host NVMe (bound to vfio-pci in L1) goes into
it in turns, fork then upstream, upstream then fork, ... (the order
rotates), N rounds (--runs, default 9; fewer only with --quick) after
a warm-up round that is not counted (the first add costs more).  L2's
guest is qtest, driven from here over L1's serial lines, so the end
point is the guest's own: device_add sent -> the device answers config
reads -> the guest enables it (memory, bus master, MSI-X) -> the NVMe
controller is enabled and answers Identify Controller; every time on the
host's clock.  Each qtest access is a round trip through L1's serial
line: that part is the same for both, and the ratio carries it.  Also
given: device_add sent -> its QMP reply (L2's realize: the VFIO group,
the DMA mapping of L2's RAM), and orderly removal: device_del -> L2's
DEVICE_DELETED (the qtest guest ejects through ACPI).

Host-side removal of a device L2 holds, one L2 per configuration:

  d  L1: echo 1 > /sys/bus/pci/devices/BDF/remove while L2 holds BDF
  e  L0: device_del of the NVMe in L1's hotplug slot

Measured: when the host's operation returns (L1's write; L0's
DEVICE_DELETED) and when L2 let go of the device (its DEVICE_DELETED).
L2's guest is qtest: it never answers an ACPI eject request, like a
guest that is hung, busy or gone.  What does not return within --wait
seconds is reported as blocked; L2 is then killed and the time until
the host's operation returns after that is given.

Output: Markdown tables on stdout and in build/bench/nested.md, every
hot-add sample in build/bench/nested.csv.
Usage: scripts/nested/bench-nested.py [--runs N] [--quick] [--wait S]
                                      [--no-add] [--no-removal]
"""

import argparse
import csv
import os
import statistics
import sys

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


MIN_RUNS = 9
NAMES = {"fork": "this project: vfio-nvme on pcie-hotplug-passthru",
         "upstream": "upstream: vfio-pci on pcie-root-port"}
# the interleaved hot-add: configuration -> (driver, L2 port)
ADD = {"fork": ("vfio-nvme", 1), "upstream": ("vfio-pci", 2)}


def close_window(qt, n):
    """The guest gives up rp N's memory window (base above limit): both
    ports' devices get BAR 0 at the same address (qnvme.BAR_BASE)."""
    d = Q.port_devfn(n)
    qt.cfg_write(0, d, 0x20, 0xfff0, 2)
    qt.cfg_write(0, d, 0x22, 0, 2)


def add_one(l2, kind, host, dev):
    """device_add, then the qtest guest takes the device into use:
    (ms to the QMP reply, ms to Identify answered), host clock."""
    driver, n = ADD[kind]
    qmp, qt = l2.qmp, l2.qt
    t0 = h.now()
    qmp.cmd("device_add", driver=driver, id=dev, bus="rp%d" % n, host=host)
    t_reply = h.now()
    h.wait_for(lambda: Q.device_present(qt, n), 30, "device on rp%d" % n,
               step=0)
    Q.guest_enable(qt, n)
    serial, _ = Q.Nvme(qt, n).start().identify()
    t1 = h.now()
    if not serial:
        raise Q.NvmeError("Identify Controller: no serial")
    return (t_reply - t0) * 1000, (t1 - t0) * 1000


def remove_one(l2, kind, dev):
    """device_del; the qtest guest ejects (ACPI): ms to DEVICE_DELETED."""
    _, n = ADD[kind]
    qmp, qt = l2.qmp, l2.qt
    m = qmp.mark()
    t0 = h.now()
    if kind == "fork":
        Q.remove_orderly(qmp, qt, dev, n)
    else:
        qmp.cmd("device_del", id=dev)
        h.wait_for(lambda: Q.acpi_down(qt, qmp, n) == 1, 30,
                   "ACPI eject request on rp%d" % n, step=0.05)
        Q.acpi_eject(qt, qmp, n)
    td = B.wait_deleted(qmp, dev, m)
    close_window(qt, n)
    return (td - t0) * 1000


def hot_add(bed, runs, samples):
    """N rounds; in each, fork and upstream add and remove once."""
    bdf = bed.slot_bdf(1)
    bed.bind(bdf, "vfio-pci")
    l2 = bed.start_l2(ports=2, port_driver=["pcie-hotplug-passthru",
                                            "pcie-root-port"], policy=True)
    try:
        for n in (1, 2):
            Q.number_bus(l2.qt, n)
        kinds = list(ADD)
        # warm-up, not counted: the first add in an L2 costs more
        for kind in kinds:
            dev = "w%s" % kind[0]
            add_one(l2, kind, bdf, dev)
            remove_one(l2, kind, dev)
        for rnd in range(runs):
            k = rnd % len(kinds)
            order = kinds[k:] + kinds[:k]
            out = []
            for pos, kind in enumerate(order):
                dev = "n%d%s" % (rnd, kind[0])
                reply, ident = add_one(l2, kind, bdf, dev)
                rm = remove_one(l2, kind, dev)
                for m, v in (("add", ident), ("add_qmp_reply", reply),
                             ("remove", rm)):
                    samples.append((rnd + 1, pos, kind, m, v))
                out.append("%s add %.0f (reply %.0f) del %.0f"
                           % (kind, ident, reply, rm))
            print("add round %d: %s ms" % (rnd + 1, "; ".join(out)),
                  flush=True)
    finally:
        l2.stop()


def add_table(samples, runs, quick):
    def vals(kind, m):
        return [v for _, _, k, mm, v in samples if k == kind and mm == m]

    out = ["## Hot-add, kernel VFIO (nested, TCG): fork and upstream take "
           "turns in one L2", ""]
    if quick:
        out += ["**Quick run: N=%d rounds (< %d); the ratio is indicative "
                "only.**" % (runs, MIN_RUNS), ""]
    out += ["N=%d rounds, the order rotating, after a warm-up round not "
            "counted; min / median (N), host clock." % runs, "",
            "| metric (ms) | %s | %s | fork/upstream by min | by median |"
            % (NAMES["fork"], NAMES["upstream"]), "|---|---|---|---|---|"]
    for m, label in (("add", "device_add -> Identify answered (the qtest "
                      "guest enabled the device)"),
                     ("add_qmp_reply", "device_add -> its QMP reply"),
                     ("remove", "device_del -> DEVICE_DELETED (the qtest "
                      "guest ejects)")):
        f, u = vals("fork", m), vals("upstream", m)
        cells = ["%.0f / %.0f (%d)" % (min(v), statistics.median(v), len(v))
                 if v else "—" for v in (f, u)]
        ratios = ["%.2fx" % (a / b) if f and u and b else "—"
                  for a, b in ((min(f or [0]), min(u or [0])),
                               (statistics.median(f or [0]),
                                statistics.median(u or [0])))]
        out.append("| %s | %s |" % (label, " | ".join(cells + ratios)))
    return out


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
    ap.add_argument("--configs", default="fork,upstream",
                    help="of the removal steps")
    ap.add_argument("--runs", type=int, default=None,
                    help="hot-add rounds (default %d; fewer only with "
                    "--quick)" % MIN_RUNS)
    ap.add_argument("--quick", action="store_true",
                    help="--runs may go below %d (default 3 then)" % MIN_RUNS)
    ap.add_argument("--no-add", dest="add", action="store_false")
    ap.add_argument("--no-removal", dest="removal", action="store_false")
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 3 if args.quick else MIN_RUNS
    if args.runs < MIN_RUNS and not args.quick:
        ap.error("--runs %d: at least %d (--quick allows fewer)"
                 % (args.runs, MIN_RUNS))
    for line in B.build():
        print(line)
    bed = B.Bed("bench").start()
    bed.l0_nvme = "l0nvme1"
    rows = []
    samples = []
    failed = []
    try:
        if args.add:
            try:
                hot_add(bed, args.runs, samples)
            except Exception as e:  # noqa: BLE001 - reported
                failed.append("hot-add: %s" % e)
                print("hot-add FAILED: %s" % e, flush=True)
        n = 0
        for kind in args.configs.split(",") if args.removal else []:
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
    out = []
    if args.add:
        out += add_table(samples, args.runs, args.runs < MIN_RUNS) + [""]
        out += ["Failed: %s" % f for f in failed]
    if rows:
        out += ["## Host-side removal of a device L2 holds (nested kernel "
                "VFIO, TCG)", "", "L2's guest never answers an eject request "
                "(qtest); wait %d s." % args.wait, "",
                "| config | step | host operation returns | L2 lets go |",
                "|---|---|---|---|"]
        for kind, step, r in rows:
            out.append("| %s | %s (%s) | %s | %s |"
                       % (NAMES[kind], step, r["what"], r["host"], r["l2"]))
    text = "\n".join(out)
    print(text)
    d = os.path.join(B.BUILD, "bench")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "nested.md"), "w") as f:
        f.write(text + "\n")
    if samples:
        with open(os.path.join(d, "nested.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["round", "position", "config", "metric", "unit",
                        "value"])
            for rnd, pos, kind, m, v in samples:
                w.writerow([rnd, pos, kind, m, "ms", "%.3f" % v])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
