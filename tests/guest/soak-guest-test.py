#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Soak in a real Linux guest: the same NVMe added and removed N times (TAP).

One UEFI guest (ACPI hotplug by default) and "the same device": id
nvme0 on port rp1, served from the same socket path and backing image;
a vfio-user server exits when its client goes, so each cycle starts a
new server process.  Every cycle checks the guest's own view: after the
add, lspci lists the controller, /sys/class/nvme and /sys/block show
it, and the guest reads back the pattern written in the first cycle;
after the orderly removal, lspci, /sys/class/nvme and /sys/block no
longer show it, and the server has exited by itself.

After SOAK_GUEST_WARMUP (5) warm-up cycles the test reads QEMU's VmRSS
and counts its open fds, runs SOAK_GUEST_CYCLES (10; make soak: 200)
cycles and reads them again: fds must not grow, RSS must grow by less
than 16 KiB per cycle.  The heap grows in steps of 128 KiB or more: when
a short run's RSS grew too much, up to two more windows of the same
length are measured from the new level and the last one is judged (a
one-time step does not come back, a leak does) (not checked when QEMU=... is an ASan build: its
quarantine keeps freed memory; LeakSanitizer checks leaks at exit).  Guest RAM is locked (mem-lock=on), so the
guest's own use of its memory does not show in QEMU's RSS.

Usage: tests/guest/soak-guest-test.py [acpi|native ...]
(native: each orderly removal waits for pciehp's 5 s attention button
window, so it is slow).
"""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402

RSS_PER_CYCLE_MAX_KIB = 16
TESTS = ["boot", "cycles", "no-growth"]

check = h.check


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v else default


def lspci_has(vm, bdf):
    _, _, lines, _ = vm.agent.call("lspci")
    short = bdf[5:] if bdf.startswith("0000:") else bdf
    return [l for l in lines if l.startswith(short) or l.startswith(bdf)]


class SoakRun:
    def __init__(self, mode):
        self.mode = mode
        self.cycles = env_int("SOAK_GUEST_CYCLES", 10)
        self.warmup = env_int("SOAK_GUEST_WARMUP", 5)
        self.run = h.new_run_dir("soak-" + mode)
        self.img = h.make_image(os.path.join(self.run, "nvme.img"), 16)
        self.pattern = "soak-%s-%d" % (mode, os.getpid())
        self.want = hashlib.md5(h.pattern_bytes(self.pattern)).hexdigest()
        self.vm = None
        self.server = None
        self.done = 0

    def cleanup(self):
        if self.vm:
            self.vm.shutdown()
        if self.server:
            self.server.stop()

    def usage(self):
        """QEMU's VmRSS (KiB) and open fds, once the last removal settled."""
        time.sleep(0.3)
        self.vm.qmp.cmd("query-status")
        return self.vm.rss_kib(), len(os.listdir("/proc/%d/fd" % self.vm.proc.pid))

    def cycle(self):
        vm = self.vm
        self.server = h.Server(self.run, self.img).start()
        a = h.hot_add(vm, "rp1", self.server)
        lines = lspci_has(vm, a["bdf"])
        check(lines and "Non-Volatile" in lines[0],
              "cycle %d: guest lspci: %s" % (self.done + 1, lines))
        _, text, _, _ = vm.agent.call("ls")
        check(a["ctrl"] in text and a["disk"] in text,
              "cycle %d: guest sysfs: %s" % (self.done + 1, text))
        if self.done == 0:
            _, md5, _, _ = vm.agent.call("write %s 4 %s" % (a["disk"], self.pattern),
                                         timeout=60)
        else:
            _, md5, _, _ = vm.agent.call("read %s 4 1" % a["disk"], timeout=60)
        check(md5 == "md5=" + self.want,
              "cycle %d: guest md5 %s, want %s" % (self.done + 1, md5, self.want))
        h.remove_orderly(vm, "nvme0", a["bdf"], a["disk"])
        check(not lspci_has(vm, a["bdf"]),
              "cycle %d: guest lspci still lists %s" % (self.done + 1, a["bdf"]))
        _, text, _, _ = vm.agent.call("ls")
        check("nvme=[]" in text and a["disk"] not in text,
              "cycle %d: guest sysfs after removal: %s" % (self.done + 1, text))
        check(self.server.wait(10) is not None,
              "cycle %d: the server did not exit after its client went"
              % (self.done + 1))
        self.done += 1
        return a

    def t_boot(self):
        self.vm = h.VM(self.run, ports=1, mode=self.mode).start(boot_timeout=180)
        return ("the UEFI guest boots (%s hotplug)" % self.mode,
                ["guest: READY at %.2f s uptime (%.1f s wall)"
                 % (self.vm.boot_guest, self.vm.boot_wall)])

    def t_cycles(self):
        for _ in range(self.warmup):
            a = self.cycle()
        self.start = self.usage()
        with open("/proc/%d/maps" % self.vm.proc.pid) as f:
            self.asan = "libasan" in f.read()
        t0 = time.monotonic()
        steps, last, done = [], self.start[0], 0
        self.windows = []
        # The heap grows in steps of 128 KiB or more, so a one-time
        # allocation after the warm-up can lift the RSS of a short run
        # over 16 KiB per cycle.  A leak climbs again: when the RSS grew
        # too much, measure up to two more windows of the same length
        # from the new level, and judge the last one.
        while True:
            start = self.usage() if self.windows else self.start
            for i in range(self.cycles):
                a = self.cycle()
                done += 1
                rss = self.vm.rss_kib()
                if rss != last:
                    steps.append("%d:%+d" % (done, rss - last))
                    last = rss
            end = self.usage()
            self.windows.append((start, end))
            per = (end[0] - start[0]) / max(self.cycles, 1)
            if self.asan or per < RSS_PER_CYCLE_MAX_KIB or len(self.windows) == 3:
                break
        self.secs = time.monotonic() - t0
        self.start, self.end = self.windows[-1]
        return ("%d add/orderly-remove cycles of nvme0 on rp1 (after %d warm-up): "
                "each seen by the guest in lspci and sysfs, data read back"
                % (self.cycles, self.warmup),
                ["%.1f s, %.2f s per cycle; last: %s %s %s"
                 % (self.secs, self.secs / max(done, 1),
                    a["bdf"], a["ctrl"], a["disk"]),
                 "QEMU RSS changes (cycle:KiB): %s" % (" ".join(steps) or "none")]
                + ["window %d: RSS %d -> %d KiB, fds %d -> %d"
                   % (n + 1, w[0][0], w[1][0], w[0][1], w[1][1])
                   for n, w in enumerate(self.windows)])

    def t_no_growth(self):
        (rss0, _), (rss1, fds1) = self.start, self.end
        fds0 = self.windows[0][0][1]      # fds: from the first window on
        per = (rss1 - rss0) / max(self.cycles, 1)
        h.note("SOAK guest/%s/orderly cycles=%d rss_start=%d rss_end=%d "
               "fds_start=%d fds_end=%d rss_per_cycle=%.2f%s"
               % (self.mode, self.cycles, rss0, rss1, fds0, fds1, per,
                  " asan=1" if self.asan else ""))
        desc = ("QEMU: RSS %d -> %d KiB (%+.2f KiB/cycle), open fds %d -> %d"
                % (rss0, rss1, per, fds0, fds1))
        check(fds1 == fds0, desc + ": fds grew")
        if self.asan:
            return (desc + " (ASan: RSS not checked)",
                    ["ASan keeps freed memory in quarantine; LeakSanitizer "
                     "checks leaks when QEMU exits"])
        check(per < RSS_PER_CYCLE_MAX_KIB,
              desc + ": RSS grew %d KiB per cycle or more" % RSS_PER_CYCLE_MAX_KIB)
        return (desc, [])


def evidence(m):
    out = ["logs: %s, %d cycles done" % (m.run, m.done)]
    if m.vm is not None:
        out.append("QEMU %s; log tail: %s"
                   % ("running" if m.vm.alive() else "exited", m.vm.tail_log(4)))
    return out


def run_mode(mode):
    m = SoakRun(mode)
    h.note("mode %s: logs in %s" % (mode, m.run))
    try:
        h.run_tap_tests(m, mode + "/soak", TESTS, evidence)
    finally:
        m.cleanup()


if __name__ == "__main__":
    h.tap_main(TESTS, run_mode, modes=("acpi",))
