#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make bench: hotplug latencies and memory, this project against upstream.

Three configurations, all with the same QEMU binary, the same UEFI (OVMF)
q35 guest with shared memfd memory and locked memory, and for (a) and (b)
the same vfio-user NVMe server (a QEMU x-remote process on a 16 MiB
sparse image, one per device: a server serves one connection):

  (a) this project: pcie-hotplug-passthru ports + vfio-user-nvme
  (b) upstream's stock path: pcie-root-port + vfio-user-pci
  (c) an emulated NVMe: pcie-root-port + nvme on a -blockdev defined at
      start-up (no server)

The stock root ports have the passthrough port's reservations
(io-reserve=0,mem-reserve=2M).

Latencies: ONE VM per hotplug mode (ACPI, native) holds ports for all
three: rp1..rp4 (pcie-hotplug-passthru, so the VM meets the passthrough
policy) for (a), rb1..rb4 and rc1 (pcie-root-port) for (b) and (c).  The
configurations take turns within it, round by round: A B C, B C A,
C A B, ... (the order rotates each round, so that none is always first
after the VM sat idle or always follows the same peer), N rounds
(--runs, default 9).  Measured, every time on the host's clock:

  add        device_add sent -> the guest agent's OK of "wait-disk": the
             agent spins on /sys/block/nvme* (builtins, a 2 ms pause) and
             answers the moment the new disk is there; it is armed before
             device_add is sent
  remove     device_del sent -> DEVICE_DELETED
  surprise   kill -9 of the vfio-user server -> first QMP event about the
             device, and -> the agent's OK of "wait-gone" (the PCI device
             is gone from the guest's sysfs); (a) and (b) take turns; for
             (b) upstream reacts to neither within a bounded wait (3 s):
             that is reported, and whether the guest still lists the
             device; not applicable to (c)

Memory and the 32-port fill keep one VM per (configuration, mode), as
before (interleaving them would need ~100 ports in one VM, and an RSS
delta is only clean in a VM whose heap no other device warmed):

  fill-32    32 ports filled one by one, total time (ACPI only, once;
             servers started beforehand, not timed)
  rss        VmRSS of the VM's QEMU before and after attaching K devices,
             divided by K

Reported per mode and metric: minimum, median and N per configuration,
and the ratio of (a) to (b) and to (c) in the same run, by minimum and
by median; the issue's goals beside them (printed, never asserted).
--repeat K runs it all K times and shows the ratios of each run.

Output: a Markdown table on stdout and in build/bench/results.md, every
sample (one row each) in build/bench/results.csv, and build/bench/
results.png when python3-matplotlib is installed.  --report CSV prints
the tables again from a CSV; --baseline CSV compares the removals with
an earlier run's.

Usage: scripts/guest/bench.py [--runs N] [--quick] [--repeat K]
                              [--modes acpi,native] [--configs a,b,c]
                              [--rss-devices K] [--no-rss] [--no-fill]
                              [--baseline CSV] [--report CSV]
"""

import argparse
import csv
import json
import os
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "guest"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402

CONFIGS = {
    "a": "(a) pcie-hotplug-passthru + vfio-user-nvme",
    "b": "(b) pcie-root-port + vfio-user-pci (upstream)",
    "c": "(c) pcie-root-port + emulated nvme",
}
SHORT = {"a": "a: passthru", "b": "b: upstream vfio-user",
         "c": "c: emulated nvme"}

# metric -> (label, unit)
METRICS = [
    ("add", "hot-add: device_add -> new disk in guest sysfs", "ms"),
    ("remove", "orderly removal: device_del -> DEVICE_DELETED", "ms"),
    ("surprise_qmp", "surprise (kill -9 server) -> QMP event", "ms"),
    ("surprise_guest", "surprise (kill -9 server) -> PCI device gone in guest",
     "ms"),
]
ONCE = [
    ("fill32", "fill 32 ports one by one: total (N=1)", "s"),
    ("rss", "QEMU RSS per attached device, first K devices (N=1)", "KiB"),
    ("fill32_rss", "QEMU RSS per attached device, 32 devices (N=1)", "KiB"),
]
TITLES = {"add": "device_add -> disk in guest",
          "remove": "device_del -> DEVICE_DELETED",
          "surprise_qmp": "kill -9 server -> QMP event",
          "surprise_guest": "kill -9 server -> gone in guest",
          "fill32": "fill 32 ports, total (N=1)",
          "rss": "QEMU RSS per device (K)",
          "fill32_rss": "QEMU RSS per device (32)"}
# in the CSV only
UNITS = {m: u for m, _, u in METRICS + ONCE}
UNITS.update({"add_qmp_completed": "ms", "add_qmp_reply": "ms", "boot": "s",
              "rss_before": "KiB", "warmup_add": "ms", "warmup_remove": "ms"})

SURPRISE_BOUND = 3.0        # s: how long (b) gets to notice a dead server
GOAL_ACPI_ADD = 1.2         # ACPI add of (a) <= 1.2 x (c), min and median
GOAL_NATIVE_ADD = 1.0       # native add of (a) no slower than (b)
MIN_RUNS = 9


def log(text):
    print(text, flush=True)


def device_props(cfg, server, drive, serial):
    """device_add's arguments for a device of configuration CFG (its
    driver included): vfio-user-nvme (a) or vfio-user-pci (b) served by
    SERVER, or an emulated nvme (c) on block node DRIVE."""
    if cfg in "ab":
        return {"driver": "vfio-user-nvme" if cfg == "a" else "vfio-user-pci",
                "socket": {"type": "unix", "path": server.sock}}
    return {"driver": "nvme", "drive": drive, "serial": serial}


class Results:
    """Samples by (repeat, configuration, mode, metric); each sample keeps
    the round and its position in the round's order."""

    def __init__(self):
        self.samples = {}       # (rep, cfg, mode, metric) -> [value]
        self.where = {}         # (rep, cfg, mode, metric) -> [(round, pos)]
        self.notes = {}         # (rep, cfg, mode, metric) -> text

    def add(self, rep, cfg, mode, metric, value, rnd=0, pos=0):
        k = (rep, cfg, mode, metric)
        self.samples.setdefault(k, []).append(value)
        self.where.setdefault(k, []).append((rnd, pos))

    def note(self, rep, cfg, mode, metric, text):
        self.notes[(rep, cfg, mode, metric)] = text

    def get(self, rep, cfg, mode, metric):
        return self.samples.get((rep, cfg, mode, metric), [])

    def stat(self, rep, cfg, mode, metric, how):
        v = self.get(rep, cfg, mode, metric)
        if not v:
            return None
        return min(v) if how == "min" else statistics.median(v)

    def ratio(self, rep, mode, metric, peer, how):
        a = self.stat(rep, "a", mode, metric, how)
        p = self.stat(rep, peer, mode, metric, how)
        return a / p if a is not None and p else None

    def reps(self):
        return sorted({k[0] for k in list(self.samples) + list(self.notes)})


def fmt_num(x, unit):
    if unit == "s":
        return "%.1f" % x
    return "%.0f" % x


def fmt_ratio(x):
    return "—" if x is None else "%.2fx" % x


def cell(res, rep, cfg, mode, metric, unit):
    """min / median (N)"""
    v = res.get(rep, cfg, mode, metric)
    note = res.notes.get((rep, cfg, mode, metric))
    if not v:
        return note or "—"
    if len(v) == 1:
        text = fmt_num(v[0], unit)
    else:
        text = "%s / %s (%d)" % (fmt_num(min(v), unit),
                                 fmt_num(statistics.median(v), unit), len(v))
    return text + (" " + note if note else "")


# --------------------------------------------------------------------------
# latencies: one VM per mode, the configurations take turns


class Interleaved:
    """One VM with ports for (a), (b) and (c); add/remove rounds and
    surprise rounds in which the configurations take turns."""

    A_PORTS = ["rp1", "rp2", "rp3", "rp4"]      # rp1: add/remove cycles
    B_PORTS = ["rb1", "rb2", "rb3", "rb4"]      # rb1: add/remove cycles

    def __init__(self, mode, args, res, run, rep):
        self.mode, self.args, self.res, self.run = mode, args, res, run
        self.rep = rep
        self.configs = args.configs
        self.servers = []
        self.seq = 0
        self.stuck = set()      # ports left with a device we could not remove
        self.vm = None

    def new_server(self, cfg):
        self.seq += 1
        name = "r%d-%s-%s-s%d" % (self.rep, cfg, self.mode, self.seq)
        img = h.make_image(os.path.join(self.run, name + ".img"), 16)
        s = h.Server(self.run, img, name=name,
                     serial="b%s%s%04d" % (cfg, self.mode[0], self.seq))
        self.servers.append(s)
        return s.start()

    def start(self):
        stock = ",io-reserve=0,mem-reserve=2M"
        more = [(p, "pcie-root-port", stock) for p in self.B_PORTS + ["rc1"]]
        img = h.make_image(os.path.join(
            self.run, "r%d-%s-emu.img" % (self.rep, self.mode)), 16)
        extra = ["-blockdev", json.dumps(
            {"driver": "raw", "node-name": "blkc",
             "file": {"driver": "file", "filename": img}})]
        self.vm = h.VM(self.run, ports=len(self.A_PORTS), mode=self.mode,
                       mem_mib=1024, multifunction=True, extra_args=extra,
                       extra_ports=more,
                       name="vm-r%d-%s" % (self.rep, self.mode))
        self.vm.start(boot_timeout=240)
        self.res.add(self.rep, "all", self.mode, "boot", self.vm.boot_wall)
        q = self.vm.query()
        assert q["enabled"] and q["hotplug-mode"] == self.mode, q
        log("  booted in %.1f s: ports %s (pcie-hotplug-passthru, policy on), "
            "%s (pcie-root-port)"
            % (self.vm.boot_wall, ",".join(self.vm.ports),
               ",".join(p for p, _, _ in more)))

    # -- one add, precise end point -------------------------------------

    def add(self, cfg, port, server=None):
        """Hot-add one device of CFG on PORT: (id, info).  info["add_ms"]:
        device_add sent -> OK of the agent's wait-disk (host clock)."""
        vm = self.vm
        self.seq += 1
        dev = "d%d" % self.seq
        if cfg == "a":
            h.wait_port_empty(vm, port, 30)
        if cfg in "ab" and server is None:
            server = self.new_server(cfg)
        props = device_props(cfg, server, "blkc",
                             "emu%s%d" % (self.mode[0], self.seq))
        disk, t0, t1, qmp_s, qm, am = h.device_add_until_disk(
            vm, dev, bus=port, **props)
        r = {"id": dev, "port": port, "disk": disk,
             "add_ms": (t1 - t0) * 1000, "qmp_reply_ms": qmp_s * 1000}
        if cfg == "a":
            tc, ev, _ = vm.qmp.wait_hotplug(dev, "add", timeout=60, since=qm)
            if ev["data"]["phase"] != "completed":
                raise h.HarnessError("add %s: %s" % (dev, ev["data"]))
            r["completed_ms"] = (tc - t0) * 1000
        # the watcher's view, for the removal that follows
        r["bdf"] = vm.agent.wait_event("pci-add", None, 30, since=am)[3]
        vm.agent.wait_event("blk-add", r["disk"], 30, since=am)
        return dev, r

    def remove(self, cfg, dev, r):
        if cfg == "a":
            x = h.remove_orderly(self.vm, dev, r["bdf"], r["disk"])
            if self.mode == "native":
                h.wait_port_empty(self.vm, r["port"], 30)
            return x
        return h.remove_device(self.vm, dev, r["bdf"], r["disk"])

    def order(self, rnd, configs):
        k = rnd % len(configs) if self.args.rotate else 0
        return configs[k:] + configs[:k]

    def cycles(self):
        """Warm-up rounds (in the CSV as warmup_add/_remove, round 0),
        then N rounds; in each, every configuration adds and removes
        once."""
        port = {"a": "rp1", "b": "rb1", "c": "rc1"}
        for _ in range(self.args.warmup):
            out = []
            for pos, cfg in enumerate(self.configs):
                dev, a = self.add(cfg, port[cfg])
                r = self.remove(cfg, dev, a)
                self.res.add(self.rep, cfg, self.mode, "warmup_add",
                             a["add_ms"], 0, pos)
                self.res.add(self.rep, cfg, self.mode, "warmup_remove",
                             r["deleted_ms"], 0, pos)
                out.append("%s add %4.0f del %4d" % (cfg, a["add_ms"],
                                                     r["deleted_ms"]))
            log("  warm-up (not counted): %s ms" % ", ".join(out))
        for rnd in range(self.args.runs):
            order = self.order(rnd, self.configs)
            out = []
            for pos, cfg in enumerate(order):
                dev, a = self.add(cfg, port[cfg])
                r = self.remove(cfg, dev, a)
                add = self.res.add
                add(self.rep, cfg, self.mode, "add", a["add_ms"], rnd + 1, pos)
                add(self.rep, cfg, self.mode, "remove", r["deleted_ms"],
                    rnd + 1, pos)
                add(self.rep, cfg, self.mode, "add_qmp_reply",
                    a["qmp_reply_ms"], rnd + 1, pos)
                if "completed_ms" in a:
                    add(self.rep, cfg, self.mode, "add_qmp_completed",
                        a["completed_ms"], rnd + 1, pos)
                out.append("%s add %4.0f del %4d" % (cfg, a["add_ms"],
                                                     r["deleted_ms"]))
            log("  round %d (%s): %s ms"
                % (rnd + 1, "".join(order).upper(), ", ".join(out)))

    # -- surprise removal: (a) and (b) take turns ------------------------

    def surprise_one(self, cfg, rnd, pos):
        vm = self.vm
        free = [p for p in (self.A_PORTS if cfg == "a" else self.B_PORTS)[1:]
                if p not in self.stuck]
        if not free:
            raise h.HarnessError("no free port left for surprise removal")
        # round robin: an (a) port takes a new device once the guest has
        # acknowledged the last surprise removal on it
        port = free[rnd % len(free)]
        srv = self.new_server(cfg)
        dev, a = self.add(cfg, port, srv)
        bound = 30.0 if cfg == "a" else SURPRISE_BOUND
        wait = "wait-gone %d %s" % (bound * 1000, a["bdf"])
        cid, _ = vm.agent.send(wait)
        vm.agent.wait_data(cid, wait, 30)
        qm = vm.qmp.mark()
        vm.step("kill -9 server of %s" % dev)
        t0 = h.now()
        srv.proc.kill()         # kill -9; reaped below, after the waits

        def about(e, dev=dev):
            d = e.get("data", {})
            return d.get("device") == dev and e["event"] in (
                "PASSTHRU_HOTPLUG", "DEVICE_DELETED")
        try:
            tq, ev, _ = vm.qmp.wait_event(about, bound, qm, "QMP event")
            q_ms = (tq - t0) * 1000
        except h.HarnessError:
            q_ms, ev = None, None
        st, _, _, tg = vm.agent.wait_reply(cid, wait, bound + 30, check=False)
        g_ms = (tg - t0) * 1000 if st == "OK" else None
        srv.wait(10)
        short = a["bdf"][5:]
        _, _, lines, _ = vm.agent.call("lspci")
        listed = any(line.startswith(short) for line in lines)
        for m, v in (("surprise_qmp", q_ms), ("surprise_guest", g_ms)):
            if v is not None:
                self.res.add(self.rep, cfg, self.mode, m, v, rnd + 1, pos)
        text = "%s: QMP %s, guest %s%s" % (
            cfg, "%.0f ms (%s %s)" % (q_ms, ev["event"],
                                      ev["data"].get("phase", ""))
            if q_ms is not None else "nothing in %.0f s" % bound,
            "%.0f ms" % g_ms if g_ms is not None else "still there",
            ", lspci lists it" if listed else "")
        if cfg == "a":
            vm.qmp.wait_hotplug(dev, "surprise-remove", timeout=30, since=qm)
        else:
            # upstream: take the dead device out with device_del
            try:
                r = h.remove_device(vm, dev, a["bdf"], a["disk"], timeout=30)
                text += ", device_del %d ms" % r["deleted_ms"]
            except h.HarnessError as e:
                text += ", device_del failed: %s" % e
                self.stuck.add(port)
        return text, g_ms is not None, listed

    def surprise(self):
        configs = [c for c in self.configs if c in "ab"]
        if "c" in self.configs:
            for m in ("surprise_qmp", "surprise_guest"):
                self.res.note(self.rep, "c", self.mode, m, "n/a (no server)")
        gone = {c: 0 for c in configs}
        listed = {c: 0 for c in configs}
        for rnd in range(self.args.runs):
            out = []
            for pos, cfg in enumerate(self.order(rnd, configs)):
                text, g, l_ = self.surprise_one(cfg, rnd, pos)
                gone[cfg] += g
                listed[cfg] += l_
                out.append(text)
            log("  round %d: %s" % (rnd + 1, "; ".join(out)))
        runs = self.args.runs
        for cfg in configs:
            if gone[cfg] < runs:
                self.res.note(self.rep, cfg, self.mode, "surprise_guest",
                              "not removed in %d/%d runs (bound %.0f s)%s"
                              % (runs - gone[cfg], runs, SURPRISE_BOUND,
                                 "; still in guest lspci in %d/%d"
                                 % (listed[cfg], runs) if listed[cfg] else ""))
            if not self.res.get(self.rep, cfg, self.mode, "surprise_qmp"):
                self.res.note(self.rep, cfg, self.mode, "surprise_qmp",
                              "no event in %d/%d runs (bound %.0f s)"
                              % (runs, runs, SURPRISE_BOUND))

    def stop(self):
        if self.vm:
            self.vm.shutdown()
        for s in self.servers:
            s.stop()


# --------------------------------------------------------------------------
# memory and the 32-port fill: one VM per (configuration, mode)


class Session:
    def __init__(self, cfg, mode, args, res, run, rep):
        self.cfg, self.mode, self.args, self.res = cfg, mode, args, res
        self.run, self.rep = run, rep
        self.servers = []
        self.seq = 0
        self.fill = args.fill and mode == "acpi" and cfg in args.fill_configs
        self.nports = 32 if self.fill else args.rss_devices
        self.stuck = set()
        self.attached = []      # (id, add result) of rss_and_fill
        self.vm = None

    def new_server(self):
        self.seq += 1
        name = "r%d-%s-%s-m%d" % (self.rep, self.cfg, self.mode, self.seq)
        img = h.make_image(os.path.join(self.run, name + ".img"), 16)
        s = h.Server(self.run, img, name=name,
                     serial="m%s%s%04d" % (self.cfg, self.mode[0], self.seq))
        self.servers.append(s)
        return s.launch()

    def add(self, port, server=None):
        """Hot-add one device of this configuration on PORT: (id, result);
        waits for the guest's watcher (timing not used)."""
        self.seq += 1
        dev = "d%d" % self.seq
        if self.cfg == "a":
            r = h.hot_add(self.vm, port, server, dev_id=dev)
        else:
            props = device_props(self.cfg, server, "blk%d" % int(port[2:]),
                                 "emu%s%d" % (self.mode[0], self.seq))
            r = h.hot_add_device(self.vm, dev, props.pop("driver"), bus=port,
                                 **props)
        r["id"] = dev
        r["port"] = port
        return dev, r

    def remove(self, dev, r):
        if self.cfg == "a":
            return h.remove_orderly(self.vm, dev, r["bdf"], r["disk"])
        return h.remove_device(self.vm, dev, r["bdf"], r["disk"])

    def start(self):
        extra = []
        if self.cfg == "c":
            for i in range(1, self.nports + 1):
                name = "r%d-%s-emu%d.img" % (self.rep, self.mode, i)
                img = h.make_image(os.path.join(self.run, name), 16)
                extra += ["-blockdev", json.dumps(
                    {"driver": "raw", "node-name": "blk%d" % i,
                     "file": {"driver": "file", "filename": img}})]
        if self.cfg == "a":
            kw = {}
        else:
            # same reservations as pcie-hotplug-passthru: 2 MiB, no I/O
            kw = {"port_driver": "pcie-root-port",
                  "port_props": ",io-reserve=0,mem-reserve=2M"}
        self.vm = h.VM(self.run, ports=self.nports, mode=self.mode,
                       mem_mib=1024, multifunction=True, extra_args=extra,
                       name="vm-r%d-%s-%s" % (self.rep, self.cfg, self.mode),
                       **kw)
        self.vm.start(boot_timeout=240)
        log("  booted in %.1f s (%d ports)" % (self.vm.boot_wall, self.nports))

    def rss_and_fill(self):
        """RSS per device over the first K adds (right after boot); in a
        fill session the adds go on up to 32 ports, one at a time, timed."""
        vm = self.vm
        k = self.args.rss_devices
        free = [p for p in vm.ports if p not in self.stuck]
        if self.cfg == "a":
            for p in free:
                h.wait_port_empty(vm, p, 30)
        count = 32 if self.fill else k
        if len(free) < count:
            log("  only %d free ports: no fill" % len(free))
            self.res.note(self.rep, self.cfg, self.mode, "fill32",
                          "n/a (ports stuck)")
            count = min(k, len(free))
        servers = []
        if self.cfg in "ab":
            servers = [self.new_server() for _ in range(count)]
            for s in servers:
                s.wait_ready(60)
        time.sleep(2.0)
        rss0 = vm.rss_kib()
        t0 = h.now()
        self.res.add(self.rep, self.cfg, self.mode, "rss_before", rss0)
        for i in range(count):
            self.attached.append(self.add(free[i], servers[i] if servers
                                          else None))
            if i + 1 == k:
                rss1 = vm.rss_kib()
                self.res.add(self.rep, self.cfg, self.mode, "rss",
                             (rss1 - rss0) / k)
                log("  RSS %d -> %d KiB with %d devices: %.0f KiB per device"
                    % (rss0, rss1, k, (rss1 - rss0) / k))
        total = h.now() - t0
        if self.fill and count == 32:
            rss32 = vm.rss_kib()
            self.res.add(self.rep, self.cfg, self.mode, "fill32", total)
            self.res.add(self.rep, self.cfg, self.mode, "fill32_rss",
                         (rss32 - rss0) / 32)
            _, _, lines, _ = vm.agent.call("lspci", timeout=60)
            n = len([x for x in lines if "Non-Volatile" in x])
            log("  fill: 32 devices one by one in %.1f s; guest lists %d NVMe "
                "controllers; RSS %.0f KiB per device"
                % (total, n, (rss32 - rss0) / 32))
            if n != 32:
                self.res.note(self.rep, self.cfg, self.mode, "fill32",
                              "(guest lists %d)" % n)

    def detach_all(self):
        """Remove what rss_and_fill attached (not measured)."""
        t0 = h.now()
        while self.attached:
            dev, r = self.attached.pop()
            self.remove(dev, r)
            if self.cfg == "a" and self.mode == "native":
                h.wait_port_empty(self.vm, r.get("port", "rp1"), 30)
        log("  removed them again in %.1f s" % (h.now() - t0))

    def stop(self):
        if self.vm:
            self.vm.shutdown()
        for s in self.servers:
            s.stop()


# --------------------------------------------------------------------------
# output


def latency_table(res, rep, configs, modes):
    peers = [p for p in ("b", "c") if p in configs and "a" in configs]
    out = ["| metric (ms) | mode | " + " | ".join(
        CONFIGS[c] + " min / median (N)" for c in configs)
        + "".join(" | a/%s by min | a/%s by median" % (p, p) for p in peers)
        + " |",
        "|---|---|" + "---|" * (len(configs) + 2 * len(peers))]
    for m, label, unit in METRICS:
        for mode in modes:
            ratios = []
            for p in peers:
                ratios += [fmt_ratio(res.ratio(rep, mode, m, p, how))
                           for how in ("min", "median")]
            out.append("| %s | %s | %s |" % (
                label, mode, " | ".join(
                    [cell(res, rep, c, mode, m, unit) for c in configs]
                    + ratios)))
    return out


def once_table(res, rep, configs, modes, args):
    rows = []
    for m, label, unit in ONCE:
        for mode in modes:
            if m.startswith("fill32") and (mode != "acpi" or not args.fill):
                continue
            if not any(res.get(rep, c, mode, m) or
                       (rep, c, mode, m) in res.notes for c in configs):
                continue
            rows.append("| %s (%s) | %s | %s |" % (
                label, unit, mode,
                " | ".join(cell(res, rep, c, mode, m, unit) for c in configs)))
    if not rows:
        return []
    return (["| metric | mode | " + " | ".join(CONFIGS[c] for c in configs)
             + " |", "|---|---|" + "---|" * len(configs)] + rows)


def goal_rows(res, rep, baseline):
    """(goal, measured, met) for the issue's goals."""
    rows = []
    for mode, peer, goal, what in (
            ("acpi", "c", GOAL_ACPI_ADD,
             "ACPI hot-add of (a) <= %.1fx emulated nvme (c)" % GOAL_ACPI_ADD),
            ("native", "b", GOAL_NATIVE_ADD,
             "native hot-add of (a) no slower than upstream vfio-user-pci "
             "(b)")):
        r = [res.ratio(rep, mode, "add", peer, how)
             for how in ("min", "median")]
        if None in r:
            continue
        rows.append((what, "a/%s %.2fx by min, %.2fx by median"
                     % (peer, r[0], r[1]),
                     "yes" if max(r) <= goal else "no"))
    for m, what in (("remove", "orderly removal of (a) no slower than before"),
                    ("surprise_qmp", "surprise removal of (a) (QMP) no slower "
                                     "than before")):
        for mode in ("acpi", "native"):
            now_ = [res.stat(rep, "a", mode, m, how)
                    for how in ("min", "median")]
            if None in now_:
                continue
            if baseline is None:
                rows.append(("%s, %s" % (what, mode),
                             "%.0f / %.0f ms (min / median); no --baseline "
                             "CSV to compare with" % tuple(now_), "—"))
                continue
            brep = baseline.reps()[-1]
            was = [baseline.stat(brep, "a", mode, m, how)
                   for how in ("min", "median")]
            if None in was:
                rows.append(("%s, %s" % (what, mode), "no baseline sample",
                             "—"))
                continue
            r = [n / w if w else None for n, w in zip(now_, was)]
            rows.append(("%s, %s" % (what, mode),
                         "%.0f / %.0f ms, was %.0f / %.0f ms (%s, %s)"
                         % (now_[0], now_[1], was[0], was[1], fmt_ratio(r[0]),
                            fmt_ratio(r[1])),
                         "yes" if None not in r and max(r) <= 1.0 else "no"))
    return rows


def ratio_summary(res, modes):
    """One row per repeat: the ratios of (a) to its peers."""
    cols = [(mode, m, p) for m in ("add", "remove") for mode in modes
            for p in ("b", "c")]
    cols = [c for c in cols if any(res.ratio(r, c[0], c[1], c[2], "min")
                                   for r in res.reps())]
    if not cols:
        return []
    out = ["| run | " + " | ".join("%s %s a/%s (min, median)" % (m, mode, p)
                                   for mode, m, p in cols) + " |",
           "|---|" + "---|" * len(cols)]
    for rep in res.reps():
        out.append("| %d | %s |" % (rep, " | ".join(
            "%s, %s" % (fmt_ratio(res.ratio(rep, mode, m, p, "min")),
                        fmt_ratio(res.ratio(rep, mode, m, p, "median")))
            for mode, m, p in cols)))
    return out


def markdown(res, args, configs, modes, took, baseline=None):
    out = ["## NVMe hotplug benchmark (TCG, OVMF, 2 vCPUs, 1 GiB)", ""]
    runs = args.runs
    if runs < MIN_RUNS:
        out += ["**Quick run: N=%d rounds (< %d); the ratios are indicative "
                "only.**" % (runs, MIN_RUNS), ""]
    out.append("Latencies: one VM per mode holds (a), (b) and (c); they take "
               "turns, round by round (%s), N=%d rounds; each cell is "
               "min / median (N) on the host's clock; a/b and a/c are the "
               "ratios of (a) to its peers in the same run; %d warm-up "
               "round(s) before, not counted (the first add in a VM costs "
               "more)."
               % ("the order rotates each round: ABC, BCA, CAB"
                  if args.rotate else "always A B C", runs,
                  args.warmup))
    for rep in res.reps():
        out += ["", "### Run %d of %d" % (rep, len(res.reps())), ""]
        out += latency_table(res, rep, configs, modes)
        once = once_table(res, rep, configs, modes, args)
        if once:
            out += ["", "Memory and fill (one VM per configuration and "
                    "mode, N=1):", ""] + once
        out += ["", "The issue's goals (printed, not asserted):", "",
                "| goal | measured | met? |", "|---|---|---|"]
        out += ["| %s | %s | %s |" % g for g in goal_rows(res, rep, baseline)]
    if len(res.reps()) > 1:
        out += ["", "### Ratios of (a) to its peers, run by run", ""]
        out += ratio_summary(res, modes)
    out += ["", "Notes: add = device_add sent -> the guest agent's wait-disk "
            "answers (it spins on /sys/block/nvme* every ~2 ms, armed before "
            "device_add; the OK's arrival is timed on the host); remove = "
            "device_del -> DEVICE_DELETED; surprise = kill -9 of the server "
            "-> first QMP event, and -> the guest agent's wait-gone answers "
            "(the PCI device left the guest's sysfs). Native orderly removal "
            "includes Linux pciehp's 5 s attention-button wait. (b) is "
            "upstream without this fork's device: a killed vfio-user server "
            "is not reported, the device stays in the guest (taken out "
            "afterwards with device_del). Surprise removals take turns too "
            "(a, b), on ports of their own. RSS and the 32-port fill are not "
            "interleaved: one VM per configuration and mode (their VmRSS "
            "delta needs a VM no other device warmed up); RSS: VmRSS delta "
            "of the VM's QEMU over the first K=%d devices after boot (the "
            "servers' own memory not counted; QEMU's heap grows in steps, "
            "so a few devices may read 0 and the 32-device figure is the "
            "steadier one)." % args.rss_devices]
    if not args.rss:
        out.append("RSS was not measured (--no-rss).")
    if not args.fill:
        out.append("The 32-port fill was not run (--quick / --no-fill).")
    else:
        out.append("The 32-port fill runs once per run (N=1), in ACPI mode "
                   "only, for configurations %s (servers started "
                   "beforehand, not timed)."
                   % ", ".join(c for c in configs if c in args.fill_configs))
    if took is not None:
        out.append("Total bench time: %.1f min." % (took / 60))
    return "\n".join(out) + "\n"


CSV_FIELDS = ["run", "round", "position", "config", "mode", "metric", "unit",
              "value", "note"]


def write_csv(path, res):
    """One row per sample (run, round, position in the round's order);
    notes as rows without a value."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for k in sorted(res.samples):
            rep, cfg, mode, m = k
            for v, (rnd, pos) in zip(res.samples[k], res.where[k]):
                w.writerow([rep, rnd, pos, cfg, mode, m, UNITS.get(m, ""),
                            "%.3f" % v, ""])
        for (rep, cfg, mode, m), text in sorted(res.notes.items()):
            w.writerow([rep, "", "", cfg, mode, m, UNITS.get(m, ""), "", text])


def read_csv(path):
    """A results.csv of this version, or of the one before (a row per
    configuration, mode and metric, the samples in one column: run 1)."""
    res = Results()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rep = int(row.get("run") or 1)
            key = (row["config"], row["mode"], row["metric"])
            if "samples" in row:
                for x in filter(None, row["samples"].split(";")):
                    res.add(rep, *key, float(x))
            elif row["value"]:
                res.add(rep, *key, float(row["value"]), int(row["round"] or 0),
                        int(row["position"] or 0))
            if row["note"]:
                res.note(rep, *key, row["note"])
    return res


def write_png(path, res, configs, modes):
    """One panel per metric and mode: a bar per configuration (median over
    all runs, whiskers min-max); a configuration without samples is
    labelled."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    def get(c, mo, m):
        return [x for rep in res.reps() for x in res.get(rep, c, mo, m)]
    panels = [(m, label, unit) for m, label, unit in METRICS + ONCE
              if any(get(c, mo, m) for c in configs for mo in modes)]
    if not panels:
        return False
    fig, axes = plt.subplots(len(modes), len(panels), squeeze=False,
                             figsize=(3.3 * len(panels), 3.2 * len(modes)))
    colors = {"a": "#1f77b4", "b": "#ff7f0e", "c": "#2ca02c"}
    for r, mo in enumerate(modes):
        for k, (m, label, unit) in enumerate(panels):
            ax = axes[r][k]
            ax.set_title("%s\n(%s, %s)" % (TITLES[m], mo, unit), fontsize=9)
            top = max([max(get(c, mo, m)) for c in configs
                       if get(c, mo, m)] or [1]) or 1
            for j, c in enumerate(configs):
                v = get(c, mo, m)
                if not v:
                    why = "n/a" if c == "c" or m == "fill32" else "none"
                    if m.startswith("surprise") and c == "b":
                        why = "not\nremoved"
                    ax.text(j, top * 0.05, why, ha="center", fontsize=8)
                    continue
                med = statistics.median(v)
                ax.bar(j, med, 0.7, color=colors[c],
                       yerr=[[med - min(v)], [max(v) - med]], capsize=3)
                ax.text(j, med, fmt_num(med, unit), ha="center",
                        va="bottom", fontsize=7)
            ax.set_xticks(range(len(configs)))
            ax.set_xticklabels(configs)
            ax.set_ylim(0, (top or 1) * 1.2)
    fig.suptitle("NVMe hotplug: " + ", ".join(SHORT[c] for c in configs)
                 + " (median, whiskers min-max%s)"
                 % (", %d runs pooled" % len(res.reps())
                    if len(res.reps()) > 1 else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def chart_elsewhere(csv_path, png, configs, modes):
    """python3-matplotlib is Debian's: when this python3 is another one
    (pyenv, a venv), draw the chart with /usr/bin/python3."""
    import subprocess
    sysp = "/usr/bin/python3"
    if not os.access(sysp, os.X_OK) or \
            os.path.realpath(sys.executable) == os.path.realpath(sysp):
        return False
    r = subprocess.run([sysp, os.path.abspath(__file__), "--chart", csv_path,
                        "--configs", ",".join(configs),
                        "--modes", ",".join(modes),
                        "--out", os.path.dirname(png)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0 and os.path.exists(png)


# --------------------------------------------------------------------------


def guarded(what, fn, failed, vm=None):
    """Run FN; a failure is logged and collected, not raised."""
    try:
        fn()
        return True
    except (h.HarnessError, OSError, KeyError, ValueError,
            AssertionError) as e:
        log("  %s FAILED: %s" % (what, e))
        failed.append("%s: %s" % (what, e))
    except Exception:
        traceback.print_exc()
        failed.append("%s: exception" % what)
    return False


def one_run(rep, args, res, run, failed):
    for mode in args.modes:
        log("\n== run %d, %s hotplug: %s take turns in one VM"
            % (rep, mode, ", ".join("(%s)" % c for c in args.configs)))
        s = Interleaved(mode, args, res, run, rep)
        try:
            if guarded("%d/%s/boot" % (rep, mode), s.start, failed):
                for part in (s.cycles, s.surprise):
                    ok = guarded("%d/%s/%s" % (rep, mode, part.__name__), part,
                                 failed)
                    if not ok and not s.vm.alive():
                        why = "QEMU exited with %s: %s" % (
                            s.vm.proc.returncode, s.vm.tail_log(1))
                        log("  " + why)
                        failed[-1] += " (%s)" % why
                        break
        finally:
            s.stop()
    for mode in args.modes:
        for cfg in args.configs:
            fill = args.fill and mode == "acpi" and cfg in args.fill_configs
            if not (args.rss or fill):
                continue
            log("\n== run %d, memory%s: %s, %s hotplug"
                % (rep, " and 32-port fill" if fill else "", CONFIGS[cfg],
                   mode))
            s = Session(cfg, mode, args, res, run, rep)
            what = "%d/%s/%s" % (rep, cfg, mode)
            try:
                if guarded(what + "/boot", s.start, failed) and \
                        guarded(what + "/rss_and_fill", s.rss_and_fill,
                                failed):
                    guarded(what + "/detach_all", s.detach_all, failed)
            finally:
                s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None,
                    help="rounds, each configuration once per round "
                    "(default %d; fewer only with --quick)" % MIN_RUNS)
    ap.add_argument("--quick", action="store_true",
                    help="no 32-port fill, and --runs may go below %d "
                    "(default 3 then)" % MIN_RUNS)
    ap.add_argument("--repeat", type=int, default=1, metavar="K",
                    help="run the whole bench K times: K sets of ratios")
    ap.add_argument("--warmup", type=int, default=1, metavar="W",
                    help="rounds before the measured ones, not counted "
                    "(default 1: the first add in a VM is slower)")
    ap.add_argument("--no-rotate", dest="rotate", action="store_false",
                    help="always A B C (default: the order rotates)")
    ap.add_argument("--no-fill", dest="fill", action="store_false")
    ap.add_argument("--no-rss", dest="rss", action="store_false",
                    help="no memory sessions (the fill still runs)")
    ap.add_argument("--fill-configs", default="a,b,c",
                    help="configurations that get the 32-port fill "
                    "(default a,b,c)")
    ap.add_argument("--modes", default="acpi,native")
    ap.add_argument("--configs", default="a,b,c")
    ap.add_argument("--rss-devices", type=int, default=4, metavar="K")
    ap.add_argument("--out", default=os.path.join(h.BUILD, "bench"))
    ap.add_argument("--baseline", metavar="CSV",
                    help="a results.csv of an earlier run: the removals of "
                    "(a) are compared with it")
    ap.add_argument("--chart", metavar="CSV",
                    help="only draw OUT/results.png from a results.csv")
    ap.add_argument("--report", metavar="CSV",
                    help="only print the tables (and write OUT/results.md) "
                    "from a results.csv")
    args = ap.parse_args()
    args.modes = args.modes.split(",")
    args.configs = args.configs.split(",")
    args.fill_configs = args.fill_configs.split(",")
    baseline = read_csv(args.baseline) if args.baseline else None
    os.makedirs(args.out, exist_ok=True)
    if args.report:
        res = read_csv(args.report)
        args.modes = [m for m in args.modes
                      if any(k[2] == m for k in res.samples)] or args.modes
        args.configs = [c for c in args.configs
                        if any(k[1] == c for k in res.samples)] or args.configs
        args.fill = any(k[3] == "fill32" for k in list(res.samples)
                        + list(res.notes))
        args.rss = any(k[3] == "rss" for k in res.samples)
        args.runs = max([len(v) for k, v in res.samples.items()
                         if k[3] == "add"] or [0])
        args.warmup = max([len(v) for k, v in res.samples.items()
                           if k[3] == "warmup_add"] or [0])
        rounds = {w for k, v in res.where.items() for w in v}
        args.rotate = len({p for _, p in rounds}) > 1 or args.rotate
        md = markdown(res, args, args.configs, args.modes, None, baseline)
        print(md)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(md)
        return 0
    if args.chart:
        ok = write_png(os.path.join(args.out, "results.png"),
                       read_csv(args.chart), args.configs, args.modes)
        return 0 if ok else 1
    if args.runs is None:
        args.runs = 3 if args.quick else MIN_RUNS
    if args.quick:
        args.fill = False
    if any(m not in ("acpi", "native") for m in args.modes) or \
            any(c not in CONFIGS for c in args.configs) or \
            not 1 <= args.rss_devices <= 8 or args.repeat < 1 or \
            args.warmup < 0:
        ap.error("bad --modes, --configs, --repeat, --warmup or "
                 "--rss-devices")
    if args.runs < MIN_RUNS and not args.quick:
        ap.error("--runs %d: at least %d rounds (min and median of fewer do "
                 "not hold still); --quick allows fewer"
                 % (args.runs, MIN_RUNS))
    if args.runs < 2:
        ap.error("--runs: at least 2")
    run = h.new_run_dir("bench")
    log("NVMe hotplug benchmark: configs %s, modes %s, N=%d rounds%s%s%s; "
        "logs in %s" % (",".join(args.configs), ",".join(args.modes),
                        args.runs,
                        " (QUICK: fewer than %d, ratios indicative only)"
                        % MIN_RUNS if args.runs < MIN_RUNS else "",
                        ", %d runs" % args.repeat if args.repeat > 1 else "",
                        "" if args.fill else ", no 32-port fill", run))
    res = Results()
    t_all = time.monotonic()
    failed = []
    for rep in range(1, args.repeat + 1):
        one_run(rep, args, res, run, failed)
    took = time.monotonic() - t_all
    md = markdown(res, args, args.configs, args.modes, took, baseline)
    if failed:
        md += "\nParts that failed (see the logs in %s):\n\n" % run
        md += "".join("- %s\n" % f for f in failed)
    log("\n" + md)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    csv_path = os.path.join(args.out, "results.csv")
    write_csv(csv_path, res)
    png = os.path.join(args.out, "results.png")
    if write_png(png, res, args.configs, args.modes) or \
            chart_elsewhere(csv_path, png, args.configs, args.modes):
        log("wrote %s/results.{md,csv,png}" % args.out)
    else:
        if os.path.exists(png):
            os.unlink(png)      # not a stale chart from another run
        log("wrote %s/results.{md,csv} (no chart: python3-matplotlib is not "
            "installed)" % args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
