#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Where a vfio-user hot-add's time goes: its round trips to the server.

Boots one UEFI guest (tests/guest/harness.py) with a passthrough port
rp1 and a stock pcie-root-port sp1, and hot-adds an NVMe served by a
vfio-user server (QEMU's nvme behind x-vfio-user-server) RUNS times on
each: (a) vfio-user-nvme on rp1, (b) upstream vfio-user-pci on sp1,
interleaved.  QEMU runs with -trace vfio_user_* and timestamps; each
hot-add's trace, from device_add until the guest shows the disk, is cut
into messages to the server:

  waited   the sender blocked until the reply came (a vCPU or the main
           thread, with the BQL held): QEMU traced vfio_user_wait for it
           (patches/0039)
  posted   sent without waiting (posted region writes, MSI-X mask and
           unmask, DMA maps inside a memory transaction, SET_IRQS once
           the device is realized), with or without a reply

by kind (config read/write, BAR read/write, SET_IRQS, region info,
...), with the time spent waiting (send to reply, as the client traced
them).  Prints a Markdown table per configuration: the median count and
wait of each kind over the runs.  Trace files stay in the run folder.

With --phases, (a) is compared with (c), an emulated nvme on a stock
pcie-root-port, instead: both QEMUs (the VM's and the server's) trace
the guest's config accesses and the NVMe controller's registers and
commands, and each hot-add is cut into phases, from device_add to the
agent's wait-disk (the precise end point of make bench):

  device_add -> the guest's first config access to the new function
    (the realize, then ACPI or pciehp noticing the slot)
  -> first BAR0 access (enumeration, resources, the nvme driver binds)
  -> controller enabled (CC.EN) -> first admin command
  -> first I/O command (identify, features, queues, ...)
  -> the disk in the guest's sysfs (the namespace's scan)

and, inside the admin phase, how long the controller took to answer:
each admin command, as the controller sees it, to the guest's
completion queue doorbell, summed (and the CREATE SQ commands' part).

Each hot-add's events, in ms from device_add, go to timeline-DEV.txt in
the run folder; --events adds trace patterns of the VM's QEMU to them
(vfio_*,passthru_port_*, say) to see inside a phase, --server-events
those of the server's QEMU.

Usage: scripts/guest/hotadd-trace.py [--mode acpi|native] [--runs N]
                                     [--phases [--events PATTERNS]
                                      [--server-events PATTERNS]]
"""

import argparse
import collections
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "guest"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402

COMMANDS = {1: "VERSION", 2: "DMA_MAP", 3: "DMA_UNMAP", 4: "DEVICE_GET_INFO",
            5: "GET_REGION_INFO", 6: "GET_REGION_IO_FDS", 7: "GET_IRQ_INFO",
            8: "SET_IRQS", 9: "REGION_READ", 10: "REGION_WRITE",
            13: "DEVICE_RESET"}
REGIONS = {0: "BAR0", 7: "config"}
LINE = re.compile(r"\S*T(\d+):(\d+):(\d+\.\d+)Z (\w+)\s+(.*)")


def parse(text):
    """{kind: [waits in ms]} of the messages waited for (vfio_user_wait),
    {"posted": count} of the others."""
    sent = {}           # id -> (time, kind)
    waiting = set()     # ids of the messages waited for
    waited = collections.defaultdict(list)
    kind = None
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t = (int(m.group(1)) * 3600 + int(m.group(2)) * 60
             + float(m.group(3)))
        ev, rest = m.group(4), m.group(5)
        if ev == "vfio_user_region_rw":
            region = int(rest.split()[1])
            kind = "region %s" % REGIONS.get(region, str(region))
        elif ev == "vfio_user_send_write":
            sent[rest.split()[1]] = (t, kind)
            kind = None
        elif ev == "vfio_user_wait":
            waiting.add(rest.split()[1])
        elif ev == "vfio_user_recv_hdr":
            r = re.search(r"id (0x[0-9a-f]+) cmd (0x[0-9a-f]+)", rest)
            if r and r.group(1) in waiting and r.group(1) in sent:
                waiting.discard(r.group(1))
                t0, k = sent.pop(r.group(1))
                cmd = COMMANDS.get(int(r.group(2), 16), r.group(2))
                if cmd in ("REGION_READ", "REGION_WRITE"):
                    cmd = "%s %s" % (cmd, (k or "?").split()[-1])
                waited[cmd].append((t - t0) * 1000)
    posted = collections.Counter(posted=len(sent))
    return waited, posted


def trace_since(vm, pos):
    with open(vm.p("qemu.log")) as f:
        f.seek(pos)
        return f.read()


def log_end(vm):
    with open(vm.p("qemu.log")) as f:
        f.seek(0, 2)
        return f.tell()


NVME_EVENTS = ["pci_nvme_admin_cmd", "pci_nvme_io_cmd", "pci_nvme_mmio_read",
               "pci_nvme_mmio_write", "pci_nvme_mmio_start_success"]
PHASES = [("config", "device_add -> first config access (realize, notice)"),
          ("bar0", "-> first BAR0 access (enumeration, driver binds)"),
          ("enabled", "-> controller enabled (CC.EN)"),
          ("admin", "-> first admin command"),
          ("io", "-> first I/O command (admin commands)"),
          ("disk", "-> disk in the guest's sysfs")]


def trace_events(path, t0, t1):
    """[(time, event, text)] of a QEMU log (-msg timestamp=on) between
    T0 and T1, seconds since the epoch (UTC, as the log)."""
    day = t0 - t0 % 86400
    out = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            t = day + (int(m.group(1)) * 3600 + int(m.group(2)) * 60
                       + float(m.group(3)))
            if t0 <= t <= t1:
                out.append((t, m.group(4), m.group(5)))
    return out


def phases(events, bus, t0, t1):
    """{phase: ms from the previous mark}: the marks of one hot-add."""
    fn = " %02x:00.0 @" % bus
    marks = {}

    def first(name, test):
        for t, ev, text in events:
            if test(ev, text):
                marks.setdefault(name, t)
                return

    first("config", lambda ev, x: ev.startswith("pci_cfg_") and fn in x)
    first("bar0", lambda ev, x: ev.startswith("pci_nvme_mmio_"))
    first("enabled", lambda ev, x: ev == "pci_nvme_mmio_start_success")
    first("admin", lambda ev, x: ev == "pci_nvme_admin_cmd")
    first("io", lambda ev, x: ev == "pci_nvme_io_cmd")
    marks["disk"] = t1
    out, prev = {}, t0
    for name, _ in PHASES:
        if name in marks:
            out[name] = (marks[name] - prev) * 1000
            prev = marks[name]
    out.update(answers(events))
    return out


ANSWERS = [("answer", "the controller's answers: each admin command, as "
            "the controller sees it, -> the guest's CQ doorbell"),
           ("answer_create_sq", "of them, the CREATE SQ commands'")]


def answers(events):
    """{answer: ms, answer_create_sq: ms}: how long the admin commands
    took to come back, from the command at the controller to the guest's
    completion queue doorbell (the guest's interrupt handler), summed."""
    out = {"answer": 0.0, "answer_create_sq": 0.0}
    cmd = None
    for t, ev, text in events:
        if ev == "pci_nvme_admin_cmd":
            cmd = (t, "CREATE_SQ" in text)
        elif (cmd and ev == "pci_nvme_mmio_write" and
              text.startswith("addr 0x1004 ")):
            ms = (t - cmd[0]) * 1000
            out["answer"] += ms
            if cmd[1]:
                out["answer_create_sq"] += ms
            cmd = None
    return out


def main_phases(args):
    run = h.new_run_dir("hotadd-phases-" + args.mode)
    trace = ["-msg", "timestamp=on"]
    extra = args.events.split(",") if args.events else []
    sextra = args.server_events.split(",") if args.server_events else []
    for ev in NVME_EVENTS + ["pci_cfg_read", "pci_cfg_write"] + extra:
        trace += ["-trace", ev]
    vm = h.VM(run, ports=1, mode=args.mode, mem_mib=1024, name="vm",
              extra_args=trace,
              extra_ports=[("sp1", "pcie-root-port",
                            ",io-reserve=0,mem-reserve=2M")])
    res = {c: [] for c in "ac"}
    servers = []
    try:
        vm.start(boot_timeout=240)
        for i in range(args.runs):
            for cfg in ("ac" if i % 2 == 0 else "ca"):
                dev = "%s%d" % (cfg, i)
                img = h.make_image(os.path.join(run, "%s.img" % dev), 16)
                if cfg == "a":
                    srv = h.Server(run, img, name="s%d" % i,
                                   extra_args=trace[:2] + [
                                       x for ev in NVME_EVENTS + sextra
                                       for x in ("-trace", ev)]).start()
                    servers.append(srv)
                    h.wait_port_empty(vm, "rp1", 30)
                    props = {"driver": "vfio-user-nvme", "bus": "rp1",
                             "socket": {"type": "unix", "path": srv.sock}}
                else:
                    vm.qmp.send("blockdev-add", driver="raw",
                                   **{"node-name": "b" + dev, "file": {
                                       "driver": "file", "filename": img}})
                    props = {"driver": "nvme", "bus": "sp1",
                             "drive": "b" + dev, "serial": dev}
                disk, t0, t1, _, _, am = h.device_add_until_disk(
                    vm, dev, **props)
                bdf = vm.agent.wait_event("pci-add", None, 30, since=am)[3]
                vm.agent.wait_event("blk-add", disk, 30, since=am)
                time.sleep(0.2)     # the logs are written
                off = time.time() - h.now()     # the logs' clock
                t0, t1 = t0 + off, t1 + off
                events = trace_events(vm.p("qemu.log"), t0, t1)
                if cfg == "a":
                    events = sorted(events + trace_events(srv.log, t0, t1))
                res[cfg].append(phases(events, int(bdf.split(":")[1], 16),
                                       t0, t1))
                with open(os.path.join(run, "timeline-%s.txt" % dev),
                          "w") as f:
                    for t, ev, text in events:
                        f.write("%9.3f %s %s\n" % ((t - t0) * 1000, ev, text))
                if cfg == "a":
                    h.remove_orderly(vm, dev, bdf, disk)
                    srv.stop()
                else:
                    h.remove_device(vm, dev, bdf, disk)
                    vm.qmp.send("blockdev-del", **{"node-name": "b" + dev})
    finally:
        vm.shutdown()
        for srv in servers:
            srv.stop()

    def med(cfg, name):
        v = [r[name] for r in res[cfg] if name in r]
        return statistics.median(v) if v else float("nan")

    print("## Phases of one hot-add (%s, N=%d, medians in ms; (a) and (c) "
          "take turns)\n" % (args.mode, args.runs))
    print("| phase | (a) vfio-user-nvme | (c) emulated nvme | a - c |")
    print("|---|---|---|---|")
    for name, what in PHASES:
        a, c = med("a", name), med("c", name)
        print("| %s | %.1f | %.1f | %+.1f |" % (what, a, c, a - c))
    ta = statistics.median([sum(r[n] for n, _ in PHASES if n in r)
                            for r in res["a"]])
    tc = statistics.median([sum(r[n] for n, _ in PHASES if n in r)
                            for r in res["c"]])
    print("| **device_add -> disk** | **%.1f** | **%.1f** | **%+.1f** |"
          % (ta, tc, ta - tc))
    for name, what in ANSWERS:
        a, c = med("a", name), med("c", name)
        print("| (in the admin phase) %s | %.1f | %.1f | %+.1f |"
              % (what, a, c, a - c))
    print()
    print("Traces: %s" % run)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="acpi", choices=("acpi", "native"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--phases", action="store_true",
                    help="phases of (a) against an emulated nvme (c)")
    ap.add_argument("--events", metavar="PATTERNS",
                    help="with --phases: more trace events of the VM, "
                         "comma-separated")
    ap.add_argument("--server-events", metavar="PATTERNS",
                    help="with --phases: more trace events of the "
                         "vfio-user server's QEMU, comma-separated")
    args = ap.parse_args()
    if args.phases:
        return main_phases(args)
    run = h.new_run_dir("hotadd-trace-" + args.mode)
    vm = h.VM(run, ports=1, mode=args.mode, mem_mib=1024, name="vm",
              extra_args=["-msg", "timestamp=on", "-trace", "vfio_user_*"],
              extra_ports=[("sp1", "pcie-root-port",
                            ",io-reserve=0,mem-reserve=2M")])
    servers = []
    stats = {c: collections.defaultdict(list) for c in "ab"}
    posted = {c: [] for c in "ab"}
    adds = {c: [] for c in "ab"}
    try:
        vm.start(boot_timeout=240)
        for i in range(args.runs):
            for cfg in "ab":
                srv = h.Server(run, h.make_image(os.path.join(
                    run, "s%d.img" % len(servers)), 16),
                    name="s%d" % len(servers)).start()
                servers.append(srv)
                dev = "d%s%d" % (cfg, i)
                pos = log_end(vm)
                if cfg == "a":
                    r = h.hot_add(vm, "rp1", srv, dev_id=dev)
                else:
                    r = h.hot_add_device(vm, dev, "vfio-user-pci", bus="sp1",
                                         socket={"type": "unix",
                                                 "path": srv.sock})
                text = trace_since(vm, pos)
                with open(os.path.join(run, "trace-%s.txt" % dev), "w") as f:
                    f.write(text)
                waited, p = parse(text)
                kinds = set(stats[cfg]) | set(waited)
                for k in kinds:
                    stats[cfg][k].append(waited.get(k, []))
                posted[cfg].append(p["posted"])
                adds[cfg].append(r["host_disk_s"] * 1000)
                if cfg == "a":
                    h.remove_orderly(vm, dev, r["bdf"], r["disk"])
                    if args.mode == "native":
                        h.wait_port_empty(vm, "rp1", 30)
                else:
                    h.remove_device(vm, dev, r["bdf"], r["disk"])
                srv.stop()
    finally:
        vm.shutdown()
        for s in servers:
            s.stop()

    names = {"a": "(a) vfio-user-nvme on pcie-hotplug-passthru",
             "b": "(b) vfio-user-pci on pcie-root-port"}
    print("## vfio-user round trips of one hot-add (%s, N=%d, medians)\n"
          % (args.mode, args.runs))
    for cfg in "ab":
        rows = stats[cfg]
        print("%s: device_add -> disk in the guest %.0f ms (host clock)\n"
              % (names[cfg], statistics.median(adds[cfg])))
        print("| message | waited for | wait, ms |")
        print("|---|---|---|")
        total_n, total_ms = [], []
        for i in range(args.runs):
            total_n.append(sum(len(v[i]) for v in rows.values()
                               if len(v) > i))
            total_ms.append(sum(sum(v[i]) for v in rows.values()
                                if len(v) > i))
        for k in sorted(rows, key=lambda k: -statistics.median(
                [len(x) for x in rows[k]])):
            print("| %s | %d | %.1f |" % (
                k, statistics.median([len(x) for x in rows[k]]),
                statistics.median([sum(x) for x in rows[k]])))
        print("| **all** | **%d** | **%.1f** |" % (
            statistics.median(total_n), statistics.median(total_ms)))
        print("| posted (not waited for) | %d | |\n"
              % statistics.median(posted[cfg]))
    print("Traces: %s" % run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
