#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""nvme-passthru-host against a real kernel (issue #13): the nested test
bed (tests/nested/bed.py) with one spare root port, L1's kernel with its
emulated VT-d, and the command packed into l1.img by
scripts/nested/build-bed.sh.  The tests run it in L1 as an operator
would, with --json, and compare what it says with what L1's sysfs says:

  check      IOMMU (dmar), interrupt remapping, VFIO modules and node;
             the rp5 NVMe that shares its IOMMU group with an e1000e is
             not viable, then shared once the e1000e is on vfio-pci
  list       L0's NVMe controllers: model, serials, IOMMU groups, slots,
             rp5's group member
  in-use     a mounted namespace (ext2 made by busybox's mke2fs) and a
             namespace a process holds open are refused, exit 2
  enable-l2-disable
             enable binds vfio-pci and /dev/vfio/N appears; L2 hot-adds
             it (plain vfio-pci, as the command's watch and libvirt send
             it) and the qtest guest enables it and reads the pattern L1
             wrote; disable is refused while L2 holds it, and after the
             device_del gives it back to nvme with the pattern readable
  watch      watch --policy in L1 against L2's second QMP socket (a unix
             socket in L1); L0 hot-inserts an NVMe on rp4: watch enables
             it and device_adds it into L2, the guest enables it, the add
             completes; the times from L0's device_add are measured
  watch-not-allowed
             a second insertion, on rp6, that no allow line matches:
             left alone on nvme, the reason in watch's log

One L0/L1 boot, one L2; the tests build on each other.  TAP on stdout.
Nothing is skipped: a missing piece is a failure."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bed as B  # noqa: E402
import qnvme as Q  # noqa: E402

h = B.h
check = h.check
TOOL = "nvme-passthru-host"
MODEL = "QEMU NVMe Ctrl"
L2_QMP = "/tmp/l2-watch.qmp"    # L2's second monitor, in L1, for watch
POLICY = "/tmp/l2.policy"
WATCH_LOG = "/tmp/watch.out"
PATTERN = "/tmp/pattern"        # 4 KiB L1 writes at PATTERN_SEEK * 4 KiB
PATTERN_SEEK = 4
MNT = "/mnt/nvme"

TESTS = ["boot", "check", "list", "in-use", "enable-l2-disable", "watch",
         "watch-not-allowed"]


class Run(B.Run):
    EVIDENCE = ("dmesg | tail -n 8", "tail -n 6 %s" % WATCH_LOG)

    def __init__(self):
        super().__init__()
        self.watch_pid = None

    # ---- helpers ----

    def tool(self, *args, timeout=60):
        """Run the command in L1 with --json: (exit status, its JSON)."""
        cmd = "%s --json %s" % (TOOL, " ".join(args))
        _, text, out, _ = self.bed.agent.call("sh %s 2>/dev/null" % cmd,
                                              timeout=timeout)
        try:
            return int(text.partition("rc=")[2]), json.loads("".join(out))
        except ValueError:
            raise h.Fail("'%s' printed no JSON (%s): %s"
                         % (cmd, text, " | ".join(out)[:300]))

    def checks(self):
        """check --json: (exit status, {name: (result, detail)}, failed)."""
        rc, j = self.tool("check")
        return rc, {c["name"]: (c["result"], c["detail"])
                    for c in j["checks"]}, j["failed"]

    def slots(self):
        """L1's physical slots: {address (dddd:bb:ss): name}."""
        return dict(reversed(x.split()) for x in self.bed.sh(
            "for s in /sys/bus/pci/slots/*; do echo ${s##*/} "
            "$(cat $s/address); done"))

    def group(self, bdf):
        return int(self.bed.sh("group %s" % bdf)[0])

    def refused(self, op, bdf, want):
        """OP BDF exits 2 with WANT in the reason; the driver stays."""
        state = "basename $(readlink /sys/bus/pci/devices/%s/driver); " \
            "cat /sys/bus/pci/devices/%s/driver_override" % (bdf, bdf)
        before = self.bed.sh(state)
        rc, j = self.tool(op, bdf)
        check(rc == 2 and j["result"] == "refused" and want in j["message"],
              "%s %s: exit %d %s, not refused with ...%s..."
              % (op, bdf, rc, j, want))
        after = self.bed.sh(state)
        check(after == before, "%s %s: driver, driver_override %s -> %s"
              % (op, bdf, before, after))
        return "%s %s refused: %s" % (op, bdf, j["message"])

    def l1_clock(self):
        """L1's realtime minus the host's monotonic clock, in s: watch
        stamps its steps with the realtime (busybox's date has no %N;
        adjtimex prints the time in us, /proc/uptime to 10 ms)."""
        best = None
        for _ in range(3):
            t0 = h.now()
            out = self.bed.sh("cat /proc/uptime; adjtimex")
            t1 = h.now()
            up = float(out[0].split()[0])
            f = {k.strip(): v.split()[0] for k, _, v in
                 (x.partition(":") for x in out[1:]) if v.strip()}
            rt = int(f["time.tv_sec"]) + int(f["time.tv_usec"]) / 1e6
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, rt - up)
        return best[1] + self.bed.agent.clock()

    def watch_steps(self, pred, what, timeout=60):
        """Watch's JSON steps, once one satisfies PRED."""
        def steps():
            out = self.bed.sh("cat %s" % WATCH_LOG, check=False)
            s = []
            for x in out:
                try:
                    s.append(json.loads(x))
                except ValueError:
                    if x.strip():
                        raise h.Fail("watch printed: %s" % x)
            return s if any(pred(x) for x in s) else None
        try:
            return h.wait_for(steps, timeout, what, step=0.5)
        except h.HarnessError as e:
            raise h.Fail("%s; watch's log: %s" % (
                e, " | ".join(self.bed.sh("cat %s" % WATCH_LOG,
                                          check=False))[-600:]))

    def l0_insert(self, n, serial):
        """L0 hot-inserts an NVMe (SERIAL, a new 64 MiB image) on rp N;
        returns the host time of the device_add."""
        img = self.bed.p("nvme-%s.img" % serial)
        h.make_image(img, 64)
        q0 = self.bed.qmp
        q0.cmd("blockdev-add", driver="raw", **{"node-name": serial},
               file={"driver": "file", "filename": img})
        t0 = h.now()
        q0.cmd("device_add", driver="nvme", id="l0" + serial,
               bus="l0rp%d" % n, serial=serial, drive=serial)
        return t0

    # ---- tests ----

    def t_boot(self):
        lines = B.build()
        self.bed = B.Bed("host", spare_ports=1).start()
        self.bdf = {n: self.bed.slot_bdf(n) for n in (1, 2)}
        self.nic5, self.nvme5 = self.bed.slot_bdf(5), self.bed.slot_bdf(5, 1)
        usage = self.bed.sh("%s --help | head -n 1" % TOOL)
        check(usage and usage[0].startswith("Usage: %s" % TOOL),
              "the command in L1: %s" % usage)
        return ("L1 (%s) boots in %.1f s with %s packed"
                % (self.bed.kernel, self.bed.boot_wall, TOOL),
                lines[-1:] + ["NVMe: rp1 %s, rp2 %s, rp5 %s (with %s)"
                              % (self.bdf[1], self.bdf[2], self.nvme5,
                                 self.nic5)])

    def t_check(self):
        rc, c, failed = self.checks()
        want = {"iommu-hardware": ("ok", "Intel VT-d (ACPI DMAR table)"),
                "iommu": ("ok", "on: dmar0"),
                "interrupt-remapping": ("ok", "on (IR- interrupt chips in "
                                        "/proc/interrupts)"),
                "vfio-modules": ("ok", "vfio, vfio_pci, vfio_iommu_type1 "
                                 "loaded"),
                "vfio-node": ("ok", "/dev/vfio/vfio exists")}
        for n, bdf in self.bdf.items():
            want["nvme " + bdf] = (
                "ok", "free, alone in IOMMU group %d: ready for "
                "'nvme-passthru-host enable %s'" % (self.group(bdf), bdf))
        g5 = self.group(self.nvme5)
        want["nvme " + self.nvme5] = (
            "fail", "IOMMU group %d of %s is not viable: it also holds %s, "
            "bound to the host driver e1000e" % (g5, self.nvme5, self.nic5))
        check(c == want, "check: %s, want %s" % (c, want))
        check((rc, failed) == (1, 1), "check: exit %d, %d failed, want 1, 1"
              % (rc, failed))
        diag = ["%-20s %s %s" % (k, v[0], v[1]) for k, v in c.items()]
        # the partner on vfio-pci: the group is viable, but shared
        self.bed.bind(self.nic5, "vfio-pci")
        try:
            rc, c, _ = self.checks()
            shared = ("IOMMU group %d of %s is shared with %s (vfio-pci): a "
                      "hotplug device must be alone in its group (put it "
                      "behind a port with ACS)" % (g5, self.nvme5, self.nic5))
            check((rc, c["nvme " + self.nvme5]) == (1, ("fail", shared)),
                  "check with %s on vfio-pci: exit %d, %s" % (
                      self.nic5, rc, c["nvme " + self.nvme5]))
            diag.append(self.refused("enable", self.nvme5, shared))
        finally:
            self.bed.bind(self.nic5, "e1000e")
        return ("check in L1: IOMMU on (dmar0), interrupt remapping, VFIO "
                "modules and node; rp1/rp2 NVMe ready, rp5's not viable "
                "(e1000e in its group), then shared (e1000e on vfio-pci) and "
                "enable refused", diag)

    def t_list(self):
        rc, j = self.tool("list")
        check(rc == 0, "list: exit %d" % rc)
        slots = self.slots()
        devs = {d["bdf"]: d for d in j["devices"]}
        want_bdfs = sorted([self.bdf[1], self.bdf[2], self.nvme5])
        check([d["bdf"] for d in j["devices"]] == want_bdfs,
              "list: %s, want %s" % (list(devs), want_bdfs))
        for bdf, serial in ((self.bdf[1], "bed1"), (self.bdf[2], "bed2"),
                            (self.nvme5, "bed5")):
            d = devs[bdf]
            ctrl = self.bed.sh("ls /sys/bus/pci/devices/%s/nvme" % bdf)[0]
            got = {k: d[k] for k in ("vendor", "device", "controller",
                                     "model", "serial", "driver",
                                     "iommu-group", "slot", "passthrough",
                                     "in-use")}
            want = {"vendor": "1b36", "device": "0010", "controller": ctrl,
                    "model": MODEL, "serial": serial, "driver": "nvme",
                    "iommu-group": self.group(bdf), "slot": slots[bdf[:10]],
                    "passthrough": "off", "in-use": False}
            check(got == want, "list %s: %s, want %s" % (bdf, got, want))
            check(d["firmware"], "list %s: no firmware" % bdf)
        members = [{"bdf": self.nic5, "driver": "e1000e"}]
        d5 = devs[self.nvme5]
        check((d5["group-members"], d5["passable"]) == (members, False)
              and "not viable" in d5["refusal"],
              "list %s: members %s, passable %s, refusal %s"
              % (self.nvme5, d5["group-members"], d5["passable"],
                 d5["refusal"]))
        for bdf in self.bdf.values():
            check((devs[bdf]["group-members"], devs[bdf]["passable"])
                  == ([], True), "list %s: %s" % (bdf, devs[bdf]))
        text = self.bed.sh(TOOL + " list")
        self.list_text = text
        return ("list in L1: 3 x %s (serials bed1, bed2, bed5), IOMMU "
                "groups and slots as in sysfs, rp5's e1000e as group "
                "member" % MODEL, ["list:"] + ["  " + x for x in text])

    def t_in_use(self):
        bdf = self.bdf[2]
        disk = self.bed.nvme_disk(bdf)
        self.bed.sh("mke2fs -q /dev/%s && mkdir -p %s && mount -t ext2 "
                    "/dev/%s %s" % (disk, MNT, disk, MNT))
        diag = []
        try:
            diag.append(self.refused("enable", bdf, "%s is in use by the "
                                     "host: /dev/%s is mounted on %s"
                                     % (bdf, disk, MNT)))
            _, j = self.tool("list")
            d = [x for x in j["devices"] if x["bdf"] == bdf][0]
            check(d["in-use"] and d["in-use-reasons"] ==
                  ["/dev/%s is mounted on %s" % (disk, MNT)],
                  "list while mounted: %s" % d)
        finally:
            self.bed.sh("umount %s" % MNT)
        pid = self.bed.sh("sleep 600 </dev/%s >/dev/null 2>&1 & echo $!"
                          % disk)[0].strip()
        try:
            diag.append(self.refused("enable", bdf, "%s is in use by the "
                                     "host: /dev/%s is open in process %s "
                                     "(sleep)" % (bdf, disk, pid)))
        finally:
            self.bed.sh("kill %s" % pid)
        return ("a mounted namespace and one a process holds open: enable "
                "refused (exit 2, the mount and the process named), the "
                "drive stays on nvme", diag)

    def t_enable_l2_disable(self):
        bed, bdf = self.bed, self.bdf[1]
        disk = bed.nvme_disk(bdf)
        bed.sh("yes nvme-passthru-host-13 | head -c 4096 >%s; dd if=%s "
               "of=/dev/%s bs=4096 seek=%d count=1 conv=fsync 2>/dev/null"
               % (PATTERN, PATTERN, disk, PATTERN_SEEK))
        g = self.group(bdf)
        rc, j = self.tool("enable", bdf)
        want = ("%s is bound to vfio-pci (was nvme), IOMMU group %d, "
                "/dev/vfio/%d" % (bdf, g, g))
        check((rc, j["result"], j["message"]) == (0, "done", want),
              "enable: exit %d %s" % (rc, j))
        check(bed.device_info(bdf)[1] == "vfio-pci", "driver %s"
              % (bed.device_info(bdf),))
        check(bed.ok("test -c /dev/vfio/%d" % g), "no /dev/vfio/%d" % g)
        self.l2 = bed.start_l2(ports=2, extra=(
            "-qmp", "unix:%s,server=on,wait=off" % L2_QMP))
        qmp, qt = self.l2.qmp, self.l2.qt
        for n in (1, 2):
            Q.number_bus(qt, n)
        cls, t_reply, state = Q.hot_add(qmp, qt, bdf, 1, "host1", "vfio-pci")
        check(cls == 0x010802, "class %06x in L2" % cls)
        d = Q.Nvme(qt, 1).start()
        serial, _ = d.identify()
        check(serial == "bed1", "Identify in L2: serial %r" % serial)
        lba = PATTERN_SEEK * 4096 // Q.LBA
        data = d.read(lba)
        pattern = (b"nvme-passthru-host-13\n" * 200)[:Q.LBA]
        check(data == pattern, "L2 reads %r... at LBA %d" % (data[:24], lba))
        diag = ["enable: " + j["message"],
                "L2: add completed, Identify serial %s, the pattern read "
                "by DMA at LBA %d" % (serial, lba)]
        diag.append(self.refused("disable", bdf, "%s is in use by a VM: "
                                 "/dev/vfio/%d is open in process %s "
                                 "(qemu-system-x86); remove it from the VM "
                                 "first (device_del)"
                                 % (bdf, g, self.l2.pid)))
        Q.remove_orderly(qmp, qt, "host1", 1)
        rc, j = self.tool("disable", bdf)
        check((rc, j["result"], j["message"]) ==
              (0, "done", "%s is bound to nvme again" % bdf),
              "disable after device_del: exit %d %s" % (rc, j))
        disk = bed.nvme_disk(bdf)
        same = bed.ok("dd if=/dev/%s bs=4096 skip=%d count=1 2>/dev/null | "
                      "cmp - %s" % (disk, PATTERN_SEEK, PATTERN))
        check(same, "L1 does not read the pattern back from /dev/%s" % disk)
        diag.append("disable: " + j["message"] + "; /dev/%s holds the "
                    "pattern" % disk)
        return ("enable -> vfio-pci and /dev/vfio/%d; L2 hot-adds it, the "
                "guest enables it; disable refused while L2 holds it, after "
                "device_del back on nvme with L1's data" % g, diag)

    def t_watch(self):
        bed = self.bed
        slot4 = self.slots()["0000:%02x:00" % int(bed.sh(
            "cat /sys/bus/pci/devices/0000:00:%s.0/secondary_bus_number"
            % bed.slots[4])[0])]
        # slot and serial: watch waits for the nvme driver's Identify
        bed.write_file(POLICY, "vm l2\nqmp %s\ntimeout 60\n"
                       "allow slot=%s serial=bed4\n" % (L2_QMP, slot4))
        self.watch_pid = bed.sh(
            "%s --json watch --policy %s >%s 2>&1 </dev/null & echo $!"
            % (TOOL, POLICY, WATCH_LOG))[0].strip()
        self.watch_steps(lambda s: s["step"] == "watching", "watch to start",
                         30)
        off = self.l1_clock()
        qmp, qt = self.l2.qmp, self.l2.qt
        m = qmp.mark()
        t0 = self.l0_insert(4, "bed4")
        ts, ev, _ = qmp.wait_event(
            lambda e: e["event"] == "PASSTHRU_HOTPLUG"
            and e["data"]["operation"] == "add", 90, m,
            "watch's device_add in L2")
        check(ev["data"]["phase"] == "started", "L2: %s" % ev["data"])
        port, dev = ev["data"]["port"], ev["data"]["device"]
        n = int(port[2:])
        cls = qt.cfg_read(n, 0, 0x08) >> 8          # the guest sees it
        t_visible = h.now()
        check(cls == 0x010802, "class %06x in L2" % cls)
        Q.guest_enable(qt, n)
        tc, ev, _ = qmp.wait_hotplug(dev, "add", timeout=60, since=m)
        check(ev["data"]["phase"] == "completed", "add: %s" % ev["data"])
        steps = self.watch_steps(lambda s: s["step"] in ("added", "failed"),
                                 "watch's added step")
        bdf = bed.slot_bdf(4)
        by = {s["step"]: s for s in steps if s["device"] == bdf}
        check(set(by) == {"inserted", "enabled", "port", "added"},
              "watch's steps for %s: %s" % (bdf, steps))
        check(by["inserted"]["message"] == "NVMe 1b36:0010, slot %s, model "
              "%s, serial bed4" % (slot4, MODEL), "inserted: %s"
              % by["inserted"])
        check(bed.device_info(bdf)[1] == "vfio-pci", "driver %s"
              % (bed.device_info(bdf),))
        serial, _ = Q.Nvme(qt, n).start().identify()
        check(serial == "bed4", "Identify in L2: serial %r" % serial)
        t_ins = by["inserted"]["time"] - off
        e0 = by["inserted"]["elapsed-s"]
        st = {k: by[k]["elapsed-s"] - e0 for k in ("enabled", "port",
                                                   "added")}
        self.times["insert"] = (t_ins - t0, ts - t0, t_visible - t0,
                                tc - t0)
        self.times["watch-steps"] = (st["enabled"], st["port"],
                                     st["added"])
        self.dev4, self.port4 = dev, port
        return ("L0 inserts an NVMe on rp4 (slot %s): watch enables %s and "
                "device_adds it on L2's %s; the guest sees it %.2f s after "
                "L0's device_add, add completed at %.2f s"
                % (slot4, bdf, port, t_visible - t0, tc - t0),
                ["from L0's device_add: watch's 'inserted' %.2f s (L1 "
                 "clock), L2's add started %.2f s, the guest reads its "
                 "config space %.2f s, add completed %.2f s"
                 % self.times["insert"],
                 "watch's steps after 'inserted': enabled +%.3f s, port "
                 "+%.3f s, added +%.3f s" % self.times["watch-steps"]]
                + ["watch: %s %s" % (s["step"], s["message"])
                   for s in steps])

    def t_watch_not_allowed(self):
        bed, qmp = self.bed, self.l2.qmp
        m = qmp.mark()
        ports = {p["id"]: p["state"] for p in
                 qmp.cmd("query-passthru-hotplug")["ports"]}
        self.l0_insert(6, "bed6")
        steps = self.watch_steps(lambda s: s["step"] == "not-allowed",
                                 "watch's not-allowed step")
        bdf = bed.slot_bdf(6)
        mine = [(s["step"], s["message"]) for s in steps
                if s["device"] == bdf]
        slot6 = self.slots()[bdf[:10]]
        want = [("inserted", "NVMe 1b36:0010, slot %s, model %s, serial "
                 "bed6" % (slot6, MODEL)),
                ("not-allowed", "no allow line of the policy matches: left "
                 "alone")]
        check(mine == want, "watch's steps for %s: %s" % (bdf, mine))
        h.wait_for(lambda: bed.device_info(bdf)[1] == "nvme", 30,
                   "%s on nvme" % bdf, step=0.5)
        serial = bed.sh("cat /sys/bus/pci/devices/%s/nvme/*/serial"
                        % bdf)[0].strip()
        check(serial == "bed6", "serial %r in L1" % serial)
        check(bed.ok("kill -0 %s" % self.watch_pid), "watch exited")
        qmp.cmd("query-status")
        ev = [e for _, e in qmp.events[m:] if e["event"] ==
              "PASSTHRU_HOTPLUG"]
        now = {p["id"]: p["state"] for p in
               qmp.cmd("query-passthru-hotplug")["ports"]}
        check(not ev and now == ports, "L2: events %s, ports %s -> %s"
              % (ev, ports, now))
        return ("a second insertion (rp6, slot %s) no allow line matches: "
                "left alone on nvme, L2 untouched, watch runs on" % slot6,
                ["watch: %s %s" % x for x in mine])

    def close(self):
        if self.bed and self.watch_pid and self.bed.alive():
            self.bed.sh("kill %s" % self.watch_pid, check=False)
        super().close()


def main():
    B.tap_main(Run(), sys.argv[1:] or TESTS)


if __name__ == "__main__":
    main()
