#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""32 passthrough NVMe devices in one real Linux guest, and no 33rd (TAP).

One UEFI guest with 32 pcie-hotplug-passthru ports (eight functions per
slot: q35 has fewer than 32 free slots on pcie.0) and 33 vfio-user NVMe
servers, each its own process on its own 16 MiB sparse image.  The 32
devices are hot-added one at a time (each device_add waits for the add
to complete, in QEMU and in the guest, before the next: the VM runs one
hotplug operation at a time).  The guest must then list 32 NVMe
controllers (lspci) and 32 disks (/sys/block); a 33rd device_add is
refused with the VM-wide limit's message, changes nothing in QEMU or in
the guest, and leaves the 33rd server unused (it serves a device once a
port is freed).

Run in both hotplug modes (ACPI, then native PCIe hotplug); one mode can
be given on the command line.

Needs build/guest/ (scripts/guest/build-guest.sh) and the built QEMU.
Usage: tests/guest/many-devices-test.py [acpi|native ...]
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402

DEVICES = 32
LIMIT = ("passthrough hotplug allows at most 32 passthrough NVMe devices, "
         "and the VM has them")

TESTS = [
    "boot",
    "add-32",
    "guest-sees-32",
    "33rd-refused",
    "33rd-server-unused",
]

tap, note, Fail = h.tap, h.note, h.Fail

check = h.check


def guest_view(vm):
    """(NVMe lines of lspci, controllers, nvme disks) as the guest sees them."""
    _, _, lines, _ = vm.agent.call("lspci", timeout=60)
    nvme_pci = [l for l in lines if "Non-Volatile" in l or "[0108]" in l
                or " 010802" in l]
    _, text, _, _ = vm.agent.call("ls", timeout=60)
    # "nvme=[nvme0 nvme1 ] block=[nvme0n1 ... ]"
    ctrls = text.split("nvme=[", 1)[1].split("]", 1)[0].split()
    block = text.split("block=[", 1)[1].split("]", 1)[0].split()
    disks = [b for b in block if b.startswith("nvme")]
    return nvme_pci, natural(ctrls), natural(disks)


def natural(names):
    """nvme0, nvme1, ... nvme10 (not nvme0, nvme1, nvme10, ...)."""
    import re
    return sorted(names, key=lambda x: [int(t) if t.isdigit() else t
                                        for t in re.split(r"(\d+)", x)])


def present_ports(vm):
    return [p for p in vm.query()["ports"] if p["state"] == "present"]


class Run:
    def __init__(self, mode):
        self.mode = mode
        self.run = h.new_run_dir("many-" + mode)
        self.vm = None
        self.servers = []
        self.devs = {}          # dev id -> hot_add result

    def cleanup(self):
        if self.vm:
            self.vm.shutdown()
        for s in self.servers:
            s.stop()

    def t_boot(self):
        t0 = time.monotonic()
        # 33 servers, started in parallel while nothing else runs
        for i in range(DEVICES + 1):
            img = h.make_image(os.path.join(self.run, "nvme%d.img" % (i + 1)), 16)
            self.servers.append(h.Server(self.run, img, name="nvme%d" % (i + 1),
                                         serial="many%04d" % (i + 1)).launch())
        for s in self.servers:
            s.wait_ready(60)
        t_srv = time.monotonic() - t0
        self.vm = h.VM(self.run, ports=DEVICES, mode=self.mode, mem_mib=1024,
                       multifunction=True).start(boot_timeout=240)
        q = self.vm.query()
        ports = q["ports"]
        check(q["enabled"] and q["hotplug-mode"] == self.mode,
              "query-passthru-hotplug: %s" % {k: v for k, v in q.items()
                                               if k != "ports"})
        check(q["max-devices"] == DEVICES, "max-devices %s" % q["max-devices"])
        check(len(ports) == DEVICES and all(p["state"] == "empty" for p in ports),
              "ports: %s" % [(p["id"], p["state"]) for p in ports])
        return ("the UEFI guest boots with 32 passthrough ports (8 functions per "
                "slot) and %d vfio-user servers run" % len(self.servers),
                ["%d servers (16 MiB sparse images) ready in %.1f s"
                 % (len(self.servers), t_srv),
                 "guest: READY at %.2f s uptime (%.1f s wall), kernel %s"
                 % (self.vm.boot_guest, self.vm.boot_wall, self.vm.kernel),
                 "query-passthru-hotplug: %d ports, all empty, max-devices %d"
                 % (len(ports), q["max-devices"])])

    def t_add_32(self):
        vm = self.vm
        t0 = time.monotonic()
        comp, disk = [], []
        for i in range(DEVICES):
            dev = "nvme%d" % (i + 1)
            a = h.hot_add(vm, "rp%d" % (i + 1), self.servers[i], dev_id=dev)
            check(a["ids"].split()[1] == "010802",
                  "%s: guest sees class %s, not NVMe" % (dev, a["ids"]))
            self.devs[dev] = a
            comp.append(a["completed_ms"])
            disk.append(a["guest_disk_s"])
        total = time.monotonic() - t0
        check(len(present_ports(vm)) == DEVICES, "not every port is present")
        first, last = self.devs["nvme1"], self.devs["nvme%d" % DEVICES]
        return ("32 devices hot-added one at a time, each add completed in QEMU "
                "and seen by the guest before the next",
                ["32 adds in %.1f s (%.2f s per device, servers already running)"
                 % (total, total / DEVICES),
                 "QMP add completed: median %d ms, min %d, max %d"
                 % (statistics.median(comp), min(comp), max(comp)),
                 "guest disk visible after: median %.2f s, min %.2f, max %.2f"
                 % (statistics.median(disk), min(disk), max(disk)),
                 "first: %s %s -> %s; last: %s %s -> %s"
                 % (first["bdf"], first["ctrl"], first["disk"],
                    last["bdf"], last["ctrl"], last["disk"])])

    def t_guest_sees_32(self):
        t0 = time.monotonic()
        pci, ctrls, disks = guest_view(self.vm)
        want = sorted(a["bdf"][5:] if a["bdf"].startswith("0000:") else a["bdf"]
                      for a in self.devs.values())
        got = sorted(l.split()[0] for l in pci)
        check(len(pci) == DEVICES, "guest lspci lists %d NVMe controllers: %s"
              % (len(pci), got))
        check(got == want, "guest lspci %s, added %s" % (got, want))
        check(len(ctrls) == DEVICES, "guest /sys/class/nvme: %s" % ctrls)
        check(len(disks) == DEVICES, "guest /sys/block: %s" % disks)
        return ("the guest lists 32 NVMe controllers (lspci) and 32 disks "
                "(/sys/block)",
                ["guest lspci: %d NVMe controllers at %s .. %s"
                 % (len(pci), got[0], got[-1]),
                 "guest lspci: %s" % pci[0],
                 "guest /sys/class/nvme: %d (%s .. %s)" % (len(ctrls), ctrls[0],
                                                           ctrls[-1]),
                 "guest /sys/block: %d nvme disks (%s .. %s)"
                 % (len(disks), disks[0], disks[-1]),
                 "guest view read in %.1f s" % (time.monotonic() - t0)])

    def t_33rd_refused(self):
        vm = self.vm
        srv = self.servers[DEVICES]
        ev = []
        qm, am = vm.qmp.mark(), vm.agent.mark()
        # every port is full: whatever port it names, the limit comes first
        for port in ("rp1", "rp%d" % DEVICES):
            reply, secs = vm.qmp.send("device_add", driver="vfio-user-nvme",
                                      id="nvme%d" % (DEVICES + 1), bus=port,
                                      socket={"type": "unix", "path": srv.sock})
            err = reply.get("error", {}).get("desc")
            check(err == LIMIT, "33rd device_add on %s: %s" % (port, reply))
            ev.append("device_add nvme%d on %s refused in %d ms: '%s'"
                      % (DEVICES + 1, port, secs * 1000, err))
        time.sleep(1.0)         # time for anything that would follow
        evs = [e for _, e in vm.qmp.events[qm:]]
        check(not evs, "QMP events after the refusal: %s" % evs)
        check(len(present_ports(vm)) == DEVICES, "ports present changed")
        gev = vm.agent.events_since(am)
        check(not gev, "the guest saw changes: %s" % gev)
        pci, ctrls, disks = guest_view(vm)
        check(len(pci) == DEVICES and len(ctrls) == DEVICES
              and len(disks) == DEVICES,
              "guest now sees %d controllers (lspci), %d in sysfs, %d disks"
              % (len(pci), len(ctrls), len(disks)))
        check(srv.alive(), "the 33rd server exited")
        ev.append("no QMP event, no guest change; the guest still sees %d "
                  "controllers and %d disks; 32 ports present; the 33rd "
                  "server still runs" % (len(ctrls), len(disks)))
        return ("a 33rd device_add is refused with the VM-wide limit and "
                "changes nothing", ev)

    def t_33rd_server_unused(self):
        vm = self.vm
        last = "nvme%d" % DEVICES
        a = self.devs[last]
        r = h.remove_orderly(vm, last, a["bdf"], a["disk"])
        srv = self.servers[DEVICES]
        check(srv.alive(), "the 33rd server exited")
        b = h.hot_add(vm, "rp%d" % DEVICES, srv, dev_id="nvme%d" % (DEVICES + 1))
        pci, ctrls, disks = guest_view(vm)
        check(len(pci) == DEVICES and len(disks) == DEVICES,
              "guest sees %d controllers, %d disks" % (len(pci), len(disks)))
        return ("the refused add left the 33rd server unused: it serves a "
                "device once a port is freed",
                ["orderly removal of %s: completed %d ms, DEVICE_DELETED %d ms"
                 % (last, r["completed_ms"], r["deleted_ms"]),
                 "the 33rd server on rp%d: add completed %d ms, guest %s +%.2f s"
                 % (DEVICES, b["completed_ms"], b["disk"], b["guest_disk_s"]),
                 "guest sees %d controllers and %d disks again"
                 % (len(pci), len(disks))])


def evidence_on_failure(m):
    out = ["logs: %s" % m.run]
    vm = m.vm
    if vm is None:
        return out
    out.append("QEMU %s; log tail: %s"
               % ("running" if vm.alive() else "exited", vm.tail_log(4)))
    if vm.alive() and vm.agent and not vm.agent.closed:
        try:
            _, _, lines, _ = vm.agent.call("dmesg-tail 12", timeout=10, check=False)
            out += ["guest dmesg: " + l for l in lines]
        except h.HarnessError as e:
            out.append("guest agent does not answer: %s" % e)
    try:
        out += ["QMP event: %s %s" % (e["event"], e.get("data", {}))
                for _, e in vm.qmp.events[-6:]]
    except Exception:
        pass
    return out


def run_mode(mode):
    m = Run(mode)
    note("logs in %s" % m.run)
    try:
        h.run_tap_tests(m, mode, TESTS, evidence_on_failure)
    finally:
        m.cleanup()


if __name__ == "__main__":
    h.tap_main(TESTS, run_mode)
