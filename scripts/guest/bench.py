#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make bench: hotplug latencies and memory, this project against upstream.

Three configurations, all with the same QEMU binary, the same UEFI (OVMF)
q35 guest with shared memfd memory and locked memory, and for (a) and (b)
the same vfio-user NVMe server (a QEMU x-remote process on a 16 MiB
sparse image, one per device: a server serves one connection):

  (a) this project: pcie-hotplug-passthru ports + vfio-user-nvme (the VM
      meets the passthrough hotplug policy)
  (b) upstream's stock path: pcie-root-port + vfio-user-pci (no
      passthrough port in the VM, so no policy)
  (c) an emulated NVMe: pcie-root-port + nvme on a -blockdev defined at
      start-up (no server)

each in ACPI and in native PCIe hotplug mode.  One VM is booted per
(configuration, mode) and reused for every repetition.  Measured:

  add        device_add sent -> the guest sees the disk (/sys/block),
             on the guest's clock (offset to the host measured again with
             a ping before each operation; the guest agent polls sysfs
             every 50 ms, which bounds the resolution)
  remove     device_del sent -> DEVICE_DELETED (host clock)
  surprise   kill -9 of the vfio-user server -> first QMP event about the
             device, and -> the PCI device gone in the guest; for (b)
             upstream reacts to neither within a bounded wait (3 s): that
             is reported, and whether the guest still lists the device;
             not applicable to (c)
  fill-32    32 ports filled one by one, total time (ACPI only, once;
             servers started beforehand, not timed)
  rss        VmRSS of the VM's QEMU before and after attaching K devices,
             divided by K

Nothing is asserted: the issue's targets are printed beside the results.
Output: a Markdown table on stdout and in build/bench/results.md, every
sample in build/bench/results.csv, and build/bench/results.png when
python3-matplotlib is installed.

Usage: scripts/guest/bench.py [--runs N] [--quick] [--modes acpi,native]
                              [--configs a,b,c] [--rss-devices K]
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
SHORT = {"a": "a: passthru", "b": "b: upstream vfio-user", "c": "c: emulated nvme"}

# metric -> (label, unit)
METRICS = [
    ("add", "hot-add: device_add -> disk visible in guest", "ms"),
    ("remove", "orderly removal: device_del -> DEVICE_DELETED", "ms"),
    ("surprise_qmp", "surprise (kill -9 server) -> QMP event", "ms"),
    ("surprise_guest", "surprise (kill -9 server) -> PCI device gone in guest", "ms"),
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
EXTRA = {
    "add_qmp_completed": "device_add -> PASSTHRU_HOTPLUG add completed",
    "remove_guest_disk": "device_del -> disk gone in guest",
    "boot": "VM start -> guest agent READY",
    "rss_before": "QEMU VmRSS before the first device",
}

SURPRISE_BOUND = 3.0        # s: how long (b) gets to notice a dead server
TARGET_FACTOR = 1.5         # add/remove within 1.5x of (c) in ACPI mode
TARGET_SURPRISE_QMP = 50    # ms
TARGET_SURPRISE_GUEST = 500  # ms


def log(text):
    print(text, flush=True)


class Results:
    def __init__(self):
        self.samples = {}       # (config, mode, metric) -> [values]
        self.notes = {}         # (config, mode, metric) -> text

    def add(self, cfg, mode, metric, value):
        self.samples.setdefault((cfg, mode, metric), []).append(value)

    def note(self, cfg, mode, metric, text):
        self.notes[(cfg, mode, metric)] = text

    def get(self, cfg, mode, metric):
        return self.samples.get((cfg, mode, metric), [])

    def median(self, cfg, mode, metric):
        v = self.get(cfg, mode, metric)
        return statistics.median(v) if v else None


def fmt_num(x, unit):
    if unit == "s":
        return "%.1f" % x
    return "%.0f" % x


def cell(res, cfg, mode, metric, unit):
    v = res.get(cfg, mode, metric)
    note = res.notes.get((cfg, mode, metric))
    if not v:
        return note or "—"
    if len(v) == 1:
        text = fmt_num(v[0], unit)
    else:
        text = "%s [%s–%s]" % (fmt_num(statistics.median(v), unit),
                               fmt_num(min(v), unit), fmt_num(max(v), unit))
    return text + (" " + note if note else "")


# --------------------------------------------------------------------------
# one VM per (configuration, mode)


class Session:
    def __init__(self, cfg, mode, args, res, run):
        self.cfg, self.mode, self.args, self.res = cfg, mode, args, res
        self.run = run
        self.servers = []
        self.seq = 0
        self.fill = args.fill and mode == "acpi" and cfg in args.fill_configs
        self.nports = 32 if self.fill else 4 + args.rss_devices
        self.stuck = set()      # ports left with a device we could not remove
        self.attached = []      # (id, add result) of rss_and_fill
        self.vm = None

    # -- devices ---------------------------------------------------------

    def new_server(self, launch_only=False):
        self.seq += 1
        name = "%s-%s-s%d" % (self.cfg, self.mode, self.seq)
        img = h.make_image(os.path.join(self.run, name + ".img"), 16)
        s = h.Server(self.run, img, name=name,
                     serial="b%s%s%04d" % (self.cfg, self.mode[0], self.seq))
        self.servers.append(s)
        return s.launch() if launch_only else s.start()

    def add(self, port, server=None):
        """Hot-add one device of this configuration on PORT: (id, result)."""
        self.seq += 1
        dev = "d%d" % self.seq
        self.vm.resync_clock()
        if self.cfg == "a":
            r = h.hot_add(self.vm, port, server or self.new_server(), dev_id=dev)
        elif self.cfg == "b":
            s = server or self.new_server()
            r = h.hot_add_device(self.vm, dev, "vfio-user-pci", bus=port,
                                 socket={"type": "unix", "path": s.sock})
        else:
            idx = int(port[2:])
            r = h.hot_add_device(self.vm, dev, "nvme", bus=port,
                                 serial="emu%s%d" % (self.mode[0], self.seq),
                                 drive="blk%d" % idx)
        r["id"] = dev
        r["port"] = port
        return dev, r

    def remove(self, dev, r):
        self.vm.resync_clock()
        if self.cfg == "a":
            return h.remove_orderly(self.vm, dev, r["bdf"], r["disk"])
        return h.remove_device(self.vm, dev, r["bdf"], r["disk"])

    # -- the session -----------------------------------------------------

    def start(self):
        extra = []
        if self.cfg == "c":
            for i in range(1, self.nports + 1):
                img = h.make_image(os.path.join(
                    self.run, "%s-emu%d.img" % (self.mode, i)), 16)
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
                       name="vm-%s-%s" % (self.cfg, self.mode), **kw)
        self.vm.start(boot_timeout=240)
        self.res.add(self.cfg, self.mode, "boot", self.vm.boot_wall)
        if self.cfg == "a":
            q = self.vm.query()
            assert q["enabled"] and q["hotplug-mode"] == self.mode, q
        log("  booted in %.1f s (%d ports%s)" % (self.vm.boot_wall, self.nports,
                                                ", policy on" if self.cfg == "a"
                                                else ""))

    def cycles(self):
        """N x (add, orderly removal) on rp1."""
        for i in range(self.args.runs):
            dev, a = self.add("rp1")
            r = self.remove(dev, a)
            self.res.add(self.cfg, self.mode, "add", a["guest_disk_s"] * 1000)
            self.res.add(self.cfg, self.mode, "remove", r["deleted_ms"])
            if r.get("guest_disk_gone_s") is not None:
                self.res.add(self.cfg, self.mode, "remove_guest_disk",
                             r["guest_disk_gone_s"] * 1000)
            if "completed_ms" in a:
                self.res.add(self.cfg, self.mode, "add_qmp_completed",
                             a["completed_ms"])
            log("  run %d: add -> disk %4.0f ms, del -> DEVICE_DELETED %5d ms"
                % (i + 1, a["guest_disk_s"] * 1000, r["deleted_ms"]))
            if self.cfg == "a" and self.mode == "native":
                h.wait_port_empty(self.vm, "rp1", 30)

    def surprise(self):
        if self.cfg == "c":
            self.res.note("c", self.mode, "surprise_qmp", "n/a (no server)")
            self.res.note("c", self.mode, "surprise_guest", "n/a (no server)")
            return
        vm = self.vm
        ports = ["rp%d" % i for i in range(2, 5)]
        removed, still = 0, 0
        for i in range(self.args.runs):
            free = [p for p in ports if p not in self.stuck]
            if not free:
                log("  no free port left for surprise removal")
                break
            port = free[0]
            if self.cfg == "a":
                h.wait_port_empty(vm, port, 30)
            srv = self.new_server()
            dev, a = self.add(port, srv)
            vm.resync_clock()
            qm, am = vm.qmp.mark(), vm.agent.mark()
            bound = 30.0 if self.cfg == "a" else SURPRISE_BOUND
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
            try:
                left = max(0.05, bound - (h.now() - t0))
                g = vm.agent.wait_event("pci-del", a["bdf"], left, since=am)
                g_ms = (g[1] - vm.guest_time(t0)) * 1000
            except h.HarnessError:
                g_ms = None
            srv.wait(10)
            short = a["bdf"][5:]
            _, _, lines, _ = vm.agent.call("lspci")
            listed = any(l.startswith(short) for l in lines)
            if q_ms is not None:
                self.res.add(self.cfg, self.mode, "surprise_qmp", q_ms)
            if g_ms is not None:
                self.res.add(self.cfg, self.mode, "surprise_guest", g_ms)
                removed += 1
            if listed:
                still += 1
            log("  run %d: kill -9 -> QMP %s, guest PCI gone %s%s"
                % (i + 1, "%.0f ms (%s %s)" % (q_ms, ev["event"],
                                             ev["data"].get("phase", ""))
                   if q_ms is not None else "nothing within %.0f s" % bound,
                   "%.0f ms" % g_ms if g_ms is not None
                   else "no (within %.0f s)" % bound,
                   "; guest lspci still lists %s" % short if listed else ""))
            if self.cfg == "a":
                vm.qmp.wait_hotplug(dev, "surprise-remove", timeout=30, since=qm)
            else:
                # upstream: take the dead device out with device_del
                try:
                    r = h.remove_device(vm, dev, a["bdf"], a["disk"], timeout=30)
                    log("         device_del of the dead device: "
                        "DEVICE_DELETED after %d ms" % r["deleted_ms"])
                except h.HarnessError as e:
                    log("         device_del of the dead device failed: %s" % e)
                    self.stuck.add(port)
        runs = self.args.runs
        if removed < runs:
            self.res.note(self.cfg, self.mode, "surprise_guest",
                          "not removed in %d/%d runs (bound %.0f s)%s"
                          % (runs - removed, runs, SURPRISE_BOUND,
                             "; still in guest lspci in %d/%d" % (still, runs)
                             if still else ""))
        if not self.res.get(self.cfg, self.mode, "surprise_qmp"):
            self.res.note(self.cfg, self.mode, "surprise_qmp",
                          "no event in %d/%d runs (bound %.0f s)"
                          % (runs, runs, SURPRISE_BOUND))

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
            self.res.note(self.cfg, self.mode, "fill32", "n/a (ports stuck)")
            count = min(k, len(free))
        servers = []
        if self.cfg in "ab":
            servers = [self.new_server(launch_only=True) for _ in range(count)]
            for s in servers:
                s.wait_ready(60)
        time.sleep(2.0)
        rss0 = vm.rss_kib()
        t0 = h.now()
        self.res.add(self.cfg, self.mode, "rss_before", rss0)
        for i in range(count):
            self.attached.append(self.add(free[i], servers[i] if servers
                                          else None))
            if i + 1 == k:
                rss1 = vm.rss_kib()
                self.res.add(self.cfg, self.mode, "rss", (rss1 - rss0) / k)
                log("  RSS %d -> %d KiB with %d devices: %.0f KiB per device"
                    % (rss0, rss1, k, (rss1 - rss0) / k))
        total = h.now() - t0
        if self.fill and count == 32:
            rss32 = vm.rss_kib()
            self.res.add(self.cfg, self.mode, "fill32", total)
            self.res.add(self.cfg, self.mode, "fill32_rss", (rss32 - rss0) / 32)
            _, _, lines, _ = vm.agent.call("lspci", timeout=60)
            n = len([l for l in lines if "Non-Volatile" in l])
            log("  fill: 32 devices one by one in %.1f s; guest lists %d NVMe "
                "controllers; RSS %.0f KiB per device" % (total, n,
                                                         (rss32 - rss0) / 32))
            if n != 32:
                self.res.note(self.cfg, self.mode, "fill32",
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


def markdown(res, args, configs, modes, took):
    out = []
    out.append("## NVMe hotplug benchmark (TCG, OVMF, 2 vCPUs, 1 GiB)")
    out.append("")
    out.append("Median [min–max] over N=%d runs per cell unless marked N=1; "
               "same QEMU binary, same vfio-user server for (a) and (b)."
               % args.runs)
    out.append("")
    hdr = "| metric | mode | " + " | ".join(CONFIGS[c] for c in configs) + " |"
    out.append(hdr)
    out.append("|---|---|" + "---|" * len(configs))
    for m, label, unit in METRICS:
        for mode in modes:
            if m.startswith("fill32") and (mode != "acpi" or not args.fill):
                continue
            out.append("| %s (%s) | %s | %s |" % (
                label, unit, mode,
                " | ".join(cell(res, c, mode, m, unit) for c in configs)))
    out.append("")
    # targets (not asserted)
    out.append("### The issue's targets for (a) (printed, not asserted)")
    out.append("")
    out.append("| target | mode | goal | (a) median | met? |")
    out.append("|---|---|---|---|---|")
    for m, what in (("add", "hot-add within 1.5x of emulated nvme (c) in ACPI mode"),
                    ("remove", "orderly removal within 1.5x of emulated nvme "
                               "(c) in ACPI mode")):
        ref = res.median("c", "acpi", m)
        for mode in modes:
            a = res.median("a", mode, m)
            if ref is None or a is None:
                out.append("| %s | %s | — | %s | — |" % (
                    what, mode, "—" if a is None else "%.0f ms" % a))
                continue
            goal = TARGET_FACTOR * ref
            same = res.median("c", mode, m)
            extra = (" (%.2fx of (c) %s)" % (a / same, mode)) if same else ""
            out.append("| %s | %s | ≤ %.0f ms (1.5 x %.0f) | %.0f ms%s | %s |"
                       % (what, mode, goal, ref, a, extra,
                          "yes" if a <= goal else "no"))
    for m, what, goal in (("surprise_qmp", "surprise removal visible to QMP",
                           TARGET_SURPRISE_QMP),
                          ("surprise_guest", "surprise removal: gone from the guest",
                           TARGET_SURPRISE_GUEST)):
        for mode in modes:
            a = res.median("a", mode, m)
            out.append("| %s | %s | ≤ %d ms | %s | %s |" % (
                what, mode, goal, "—" if a is None else "%.0f ms" % a,
                "—" if a is None else ("yes" if a <= goal else "no")))
    out.append("")
    out.append("Notes: guest-side times use the guest's clock (offset to the "
               "host re-measured before each operation); the guest agent polls "
               "sysfs every 50 ms, so they carry up to ~50 ms of polling delay. "
               "Native orderly removal includes Linux pciehp's 5 s "
               "attention-button wait. (b) is upstream without this fork's "
               "device: a killed vfio-user server is not reported, the device "
               "stays in the guest (taken out afterwards with device_del). "
               "RSS: VmRSS delta of the VM's QEMU over the first K=%d devices "
               "after boot (the servers' own memory is not counted; guest RAM "
               "is locked and resident from the start, so it is not in the "
               "delta). QEMU's heap grows in steps (malloc arenas already "
               "resident), so a few devices may read 0 and the 32-device "
               "figure is the steadier one." % args.rss_devices)
    if not args.fill:
        out.append("The 32-port fill was not run (--quick / --no-fill).")
    else:
        out.append("The 32-port fill runs once (N=1), in ACPI mode only, for "
                   "configurations %s (servers started beforehand, not timed)."
                   % ", ".join(c for c in configs if c in args.fill_configs))
    if took is not None:
        out.append("Total bench time: %.1f min." % (took / 60))
    return "\n".join(out) + "\n"


def write_csv(path, res):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "mode", "metric", "unit", "n", "median", "min",
                    "max", "samples", "note"])
        units = {m: u for m, _, u in METRICS}
        units.update({"add_qmp_completed": "ms", "remove_guest_disk": "ms",
                      "boot": "s", "fill32_rss": "KiB", "rss_before": "KiB"})
        keys = sorted(set(res.samples) | set(res.notes))
        for cfg, mode, m in keys:
            v = res.get(cfg, mode, m)
            w.writerow([cfg, mode, m, units.get(m, ""), len(v),
                        "%.3f" % statistics.median(v) if v else "",
                        "%.3f" % min(v) if v else "",
                        "%.3f" % max(v) if v else "",
                        ";".join("%.3f" % x for x in v),
                        res.notes.get((cfg, mode, m), "")])


def write_png(path, res, configs, modes):
    """One panel per metric and mode: a bar per configuration (median,
    whiskers min-max); a configuration without samples is labelled."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [(m, label, unit) for m, label, unit in METRICS
              if any(res.get(c, mo, m) for c in configs for mo in modes)]
    if not panels:
        return False
    fig, axes = plt.subplots(len(modes), len(panels), squeeze=False,
                             figsize=(3.3 * len(panels), 3.2 * len(modes)))
    colors = {"a": "#1f77b4", "b": "#ff7f0e", "c": "#2ca02c"}
    for r, mo in enumerate(modes):
        for k, (m, label, unit) in enumerate(panels):
            ax = axes[r][k]
            ax.set_title("%s\n(%s, %s)" % (TITLES[m], mo, unit), fontsize=9)
            top = max([max(res.get(c, mo, m)) for c in configs
                       if res.get(c, mo, m)] or [1]) or 1
            for j, c in enumerate(configs):
                v = res.get(c, mo, m)
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
                 + " (median, whiskers min-max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def read_csv(path):
    res = Results()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for x in filter(None, row["samples"].split(";")):
                res.add(row["config"], row["mode"], row["metric"], float(x))
            if row["note"]:
                res.note(row["config"], row["mode"], row["metric"], row["note"])
    return res


def chart_elsewhere(csv_path, png, configs, modes):
    """python3-matplotlib is Debian's: when this python3 is another one
    (pyenv, a venv), draw the chart with /usr/bin/python3."""
    import subprocess
    sysp = "/usr/bin/python3"
    if not os.access(sysp, os.X_OK) or \
            os.path.realpath(sys.executable) == os.path.realpath(sysp):
        return False
    r = subprocess.run([sysp, os.path.abspath(__file__), "--chart", csv_path,
                        "--configs", ",".join(configs), "--modes", ",".join(modes),
                        "--out", os.path.dirname(png)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0 and os.path.exists(png)


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="repetitions (default 5)")
    ap.add_argument("--quick", action="store_true",
                    help="no 32-port fill (the rest as usual)")
    ap.add_argument("--no-fill", dest="fill", action="store_false")
    ap.add_argument("--fill-configs", default="a,b,c",
                    help="configurations that get the 32-port fill (default a,b,c)")
    ap.add_argument("--modes", default="acpi,native")
    ap.add_argument("--configs", default="a,b,c")
    ap.add_argument("--rss-devices", type=int, default=4, metavar="K")
    ap.add_argument("--out", default=os.path.join(h.BUILD, "bench"))
    ap.add_argument("--chart", metavar="CSV",
                    help="only draw OUT/results.png from a results.csv")
    ap.add_argument("--report", metavar="CSV",
                    help="only print the table (and write OUT/results.md) "
                    "from a results.csv")
    args = ap.parse_args()
    if args.report:
        res = read_csv(args.report)
        args.fill = any(k[2] == "fill32" for k in list(res.samples)
                        + list(res.notes))
        args.fill_configs = sorted({k[0] for k in res.samples if k[2] == "fill32"})
        args.runs = max(len(v) for k, v in res.samples.items()
                        if k[2] == "add")
        md = markdown(res, args, args.configs.split(","),
                      args.modes.split(","), None)
        print(md)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(md)
        return 0
    if args.chart:
        ok = write_png(os.path.join(args.out, "results.png"),
                       read_csv(args.chart), args.configs.split(","),
                       args.modes.split(","))
        return 0 if ok else 1
    if args.quick:
        args.fill = False
    modes = args.modes.split(",")
    configs = args.configs.split(",")
    args.fill_configs = args.fill_configs.split(",")
    if any(m not in ("acpi", "native") for m in modes) or \
            any(c not in CONFIGS for c in configs) or args.runs < 1 or \
            not 1 <= args.rss_devices <= 8:
        ap.error("bad --modes, --configs, --runs or --rss-devices")
    os.makedirs(args.out, exist_ok=True)
    run = h.new_run_dir("bench")
    log("NVMe hotplug benchmark: configs %s, modes %s, N=%d%s; logs in %s"
        % (",".join(configs), ",".join(modes), args.runs,
           "" if args.fill else ", no 32-port fill", run))
    res = Results()
    t_all = time.monotonic()
    failed = []
    for mode in modes:
        for cfg in configs:
            log("\n== %s, %s hotplug" % (CONFIGS[cfg], mode))
            s = Session(cfg, mode, args, res, run)
            try:
                s.start()
                # RSS first: QEMU's heap not yet warmed up by other devices
                for part in (s.rss_and_fill, s.detach_all, s.cycles,
                             s.surprise):
                    try:
                        part()
                    except (h.HarnessError, OSError, KeyError, ValueError) as e:
                        log("  %s FAILED: %s" % (part.__name__, e))
                        failed.append("%s/%s/%s: %s" % (cfg, mode, part.__name__, e))
                        if not s.vm.alive():
                            break
            except (h.HarnessError, OSError, AssertionError) as e:
                log("  FAILED: %s" % e)
                failed.append("%s/%s: %s" % (cfg, mode, e))
            except Exception:
                traceback.print_exc()
                failed.append("%s/%s: exception" % (cfg, mode))
            finally:
                s.stop()
    took = time.monotonic() - t_all
    md = markdown(res, args, configs, modes, took)
    if failed:
        md += "\nParts that failed (see the logs in %s):\n\n" % run
        md += "".join("- %s\n" % f for f in failed)
    log("\n" + md)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    write_csv(os.path.join(args.out, "results.csv"), res)
    png = os.path.join(args.out, "results.png")
    if write_png(png, res, configs, modes) or \
            chart_elsewhere(os.path.join(args.out, "results.csv"), png,
                            configs, modes):
        log("wrote %s/results.{md,csv,png}" % args.out)
    else:
        if os.path.exists(png):
            os.unlink(png)      # not a stale chart from another run
        log("wrote %s/results.{md,csv} (no chart: python3-matplotlib is not "
            "installed)" % args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
