#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""NVMe passthrough hotplug seen from inside a real Linux guest (TAP).

For each hotplug mode (ACPI, then native PCIe) one UEFI guest is booted
and taken through: hot-add, orderly removal with the data checked on the
backing image, refusal of a second operation while one is pending,
surprise removal under I/O, re-add after the surprise, and a surprise
removal asked for over QMP.  Every test point checks what the guest
itself reports (its agent watches /sys/bus/pci, /sys/class/nvme and
/sys/block and runs lspci, dd and md5sum), not only the QMP events.

Needs build/guest/ (scripts/guest/build-guest.sh) and the built QEMU.
Usage: tests/guest/hotplug-guest-test.py [acpi|native ...]
"""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402

PENDING = "another passthrough hotplug operation is pending"
IO_ERROR_WITHIN = 10.0          # seconds: guest I/O must fail this fast

TESTS = [
    "boot",
    "add",
    "orderly",
    "pending",
    "surprise",
    "readd",
    "qmp-surprise",
]

tap, note, Fail = h.tap, h.note, h.Fail

check = h.check


def lspci_has(vm, bdf):
    _, _, lines, _ = vm.agent.call("lspci")
    short = bdf[5:] if bdf.startswith("0000:") else bdf
    return [l for l in lines if l.startswith(short) or l.startswith(bdf)]


class ModeRun:
    """One VM, the steps of one mode; state carried from step to step."""

    def __init__(self, mode):
        self.mode = mode
        self.run = h.new_run_dir("test-" + mode)
        self.img = h.make_image(os.path.join(self.run, "nvme.img"), 128)
        self.vm = None
        self.servers = []
        self.pattern = "guest-test-%s-%d" % (mode, os.getpid())
        self.want = hashlib.md5(h.pattern_bytes(self.pattern)).hexdigest()

    def server(self, name="nvme"):
        s = h.Server(self.run, self.img if name == "nvme" else
                     h.make_image(os.path.join(self.run, name + ".img"), 16),
                     name=name).start()
        self.servers.append(s)
        return s

    def cleanup(self):
        if self.vm:
            self.vm.shutdown()
        for s in self.servers:
            s.stop()

    # ---- the steps; each returns (description, evidence lines) ----------

    def t_boot(self):
        self.vm = h.VM(self.run, ports=2, mode=self.mode).start(boot_timeout=180)
        q = self.vm.query()
        check(q["hotplug-mode"] == self.mode,
              "query-passthru-hotplug says mode %s" % q["hotplug-mode"])
        _, text, _, _ = self.vm.agent.call("ping")
        return ("the UEFI guest boots and its agent answers",
                ["guest: READY at %.2f s uptime (%.1f s wall), kernel %s"
                 % (self.vm.boot_guest, self.vm.boot_wall, self.vm.kernel),
                 "query-passthru-hotplug: %s" % q])

    def t_add(self):
        vm = self.vm
        a = h.hot_add(vm, "rp1", self.server())
        check(a["ids"].split()[1] == "010802",
              "guest sees class %s, not NVMe" % a["ids"])
        lines = lspci_has(vm, a["bdf"])
        check(lines and "Non-Volatile" in lines[0], "guest lspci: %s" % lines)
        _, text, _, _ = vm.agent.call("ls")
        check(a["disk"] in text, "guest /sys/block: %s" % text)
        self.dev = a
        return ("hot-add: the guest sees the PCI device, the controller and "
                "the disk",
                ["QMP add completed after %d ms (duration-ms %s)"
                 % (a["completed_ms"], a["duration_ms"]),
                 "guest: pci-add %s %s at +%.2f s, %s +%.2f s, %s +%.2f s"
                 % (a["bdf"], a["ids"], a["guest_pci_s"], a["ctrl"],
                    a["guest_nvme_s"], a["disk"], a["guest_disk_s"]),
                 "guest lspci: %s" % lines[0]])

    def t_orderly(self):
        vm, a = self.vm, self.dev
        _, text, _, _ = vm.agent.call("write %s 4 %s" % (a["disk"], self.pattern),
                                      timeout=60)
        check(text == "md5=" + self.want, "guest wrote md5 %s" % text)
        vm.agent.call("sync")
        r = h.remove_orderly(vm, "nvme0", a["bdf"], a["disk"])
        check(r["cause"] == "qmp", "cause %s" % r["cause"])
        check(not lspci_has(vm, a["bdf"]), "guest lspci still lists %s" % a["bdf"])
        img = h.image_md5(self.img, 4)
        check(img == self.want, "backing image md5 %s, guest wrote %s"
              % (img, self.want))
        return ("orderly removal: the guest lets go of the disk and the PCI "
                "device, and the data it wrote is on the backing image",
                ["QMP remove completed after %d ms, DEVICE_DELETED after %d ms"
                 % (r["completed_ms"], r["deleted_ms"]),
                 "guest: blk-del %s +%.2f s, pci-del %s +%.2f s, lspci no longer "
                 "lists it" % (a["disk"], r["guest_disk_gone_s"], a["bdf"],
                               r["guest_pci_gone_s"]),
                 "image md5 at 4 MiB %s = guest's md5 of 1 MiB of '%s'"
                 % (img, self.pattern)])

    def t_pending(self):
        vm = self.vm
        other = self.server("other")
        ev = []
        # 1. device_add on rp2 while the add on rp1 is pending
        qm, am = vm.qmp.mark(), vm.agent.mark()
        srv = self.server()
        reply, _ = vm.qmp.send("device_add", driver="vfio-user-nvme", id="nvme0",
                               bus="rp1",
                               socket={"type": "unix", "path": srv.sock})
        check("error" not in reply, "first device_add: %s" % reply)
        reply2, _ = vm.qmp.send("device_add", driver="vfio-user-nvme", id="nvme1",
                                bus="rp2",
                                socket={"type": "unix", "path": other.sock})
        err = reply2.get("error", {}).get("desc", "")
        state = vm.port_state("rp1")
        check(err.startswith(PENDING),
              "second device_add while rp1 %s: %s" % (state["state"], reply2))
        ev.append("device_add nvme1 on rp2 during the add: '%s'" % err)
        _, e, _ = vm.qmp.wait_hotplug("nvme0", "add", since=qm, timeout=60)
        check(e["data"]["phase"] == "completed", "first add: %s" % e["data"])
        blk = vm.agent.wait_event("blk-add", "nvme*", 60, since=am)
        pci = vm.agent.wait_event("pci-add", None, 60, since=am)
        ev.append("first add completed; guest: pci-add %s, blk-add %s"
                  % (pci[3], blk[3]))
        check(not [x for x in vm.agent.events_since(am)
                   if x[2] == "pci-add" and x[3] != pci[3]],
              "guest saw a second PCI device")
        _, text, _, _ = vm.agent.call("read %s 4 1" % blk[3], timeout=60)
        check(text == "md5=" + self.want, "guest reads back %s" % text)
        ev.append("guest reads the pattern back after re-add: %s" % text)
        # 2. device_add and device_del while the orderly removal is pending
        qm, am = vm.qmp.mark(), vm.agent.mark()
        reply, _ = vm.qmp.send("device_del", id="nvme0")
        check("error" not in reply, "device_del: %s" % reply)
        reply2, _ = vm.qmp.send("device_add", driver="vfio-user-nvme", id="nvme1",
                                bus="rp2",
                                socket={"type": "unix", "path": other.sock})
        reply3, _ = vm.qmp.send("device_del", id="nvme0")
        e2 = reply2.get("error", {}).get("desc", "")
        e3 = reply3.get("error", {}).get("desc", "")
        check(e2.startswith(PENDING), "device_add during removal: %s" % reply2)
        # The second device_del asks the guest again (native: QEMU refuses
        # a repeat within 5 s), or fails when the guest already ejected the
        # device; either way no second operation starts.
        check("error" not in reply3 or
              "already in the process of unplug" in e3 or "not found" in e3,
              "second device_del during removal: %s" % reply3)
        ev.append("device_add nvme1 during the removal: '%s'" % e2)
        ev.append("device_del nvme0 again during the removal: %s"
                  % ("'%s'" % e3 if e3 else "accepted, the guest asked again"))
        _, e, _ = vm.qmp.wait_hotplug("nvme0", "remove", since=qm, timeout=60)
        check(e["data"]["phase"] == "completed", "removal: %s" % e["data"])
        vm.agent.wait_event("blk-del", blk[3], 30, since=am)
        vm.agent.wait_event("pci-del", pci[3], 30, since=am)
        check(not lspci_has(vm, pci[3]), "guest lspci still lists %s" % pci[3])
        ev.append("removal completed; guest: blk-del %s, pci-del %s"
                  % (blk[3], pci[3]))
        check(vm.port_state("rp2")["state"] == "empty", "rp2 not empty")
        other.stop()
        return ("a device_add or device_del while an operation is pending is "
                "refused, and the pending operation completes in the guest", ev)

    def t_surprise(self):
        vm = self.vm
        srv = self.server()
        a = h.hot_add(vm, "rp1", srv)
        vm.agent.call("io-start %s" % a["disk"])
        time.sleep(1.0)
        _, text, _, _ = vm.agent.call("io-status")
        check(text.startswith("running"), "guest I/O loop: %s" % text)
        am = vm.agent.mark()
        t_kill = h.now()
        r = h.surprise_kill(vm, srv, "nvme0", a["bdf"], a["disk"])
        check(r["cause"] == "host-gone", "cause %s" % r["cause"])
        io = vm.agent.wait_event("io-error", a["disk"], IO_ERROR_WITHIN + 20, since=am)
        io_lat = io[1] - vm.guest_time(t_kill)
        _, ping, _, rtt = vm.agent.call("ping")
        still = lspci_has(vm, a["bdf"])
        check(io_lat <= IO_ERROR_WITHIN, "guest I/O failed only after %.1f s" % io_lat)
        check(not still, "guest lspci still lists %s" % still)
        _, _, dm, _ = vm.agent.call("dmesg-grep 'nvme|pciehp: Slot|acpiphp_glue'")
        self.dev = a
        return ("surprise removal under I/O (server killed): the guest keeps "
                "running, its I/O fails within %.0f s, the device leaves its PCI "
                "list" % IO_ERROR_WITHIN,
                ["QMP surprise-remove completed %d ms after kill -9, cause %s (%s)"
                 % (r["completed_ms"], r["cause"], r["reason"]),
                 "guest: io-error at +%.2f s: %s" % (io_lat, io[4]),
                 "guest: blk-del +%.2f s, pci-del +%.2f s; lspci no longer lists "
                 "%s" % (r["guest_disk_gone_s"], r["guest_pci_gone_s"], a["bdf"]),
                 "guest agent answers: %s (%.0f ms)" % (ping, rtt * 1000)]
                + ["guest dmesg: " + l for l in dm[-4:]])

    def t_readd(self):
        vm = self.vm
        h.wait_port_empty(vm, "rp1", 30)
        a = h.hot_add(vm, "rp1", self.server())
        _, text, _, _ = vm.agent.call("read %s 4 1" % a["disk"], timeout=60)
        check(text == "md5=" + self.want, "guest reads %s" % text)
        _, text2, _, _ = vm.agent.call("write %s 12 %s" % (a["disk"], self.pattern),
                                       timeout=60)
        check(text2 == "md5=" + self.want, "guest write after re-add: %s" % text2)
        self.dev = a
        return ("re-add after a surprise removal: the guest probes the new "
                "controller and uses the disk",
                ["the port took the device %.2f s after it first could be "
                 "asked (the guest finishing the surprise removal)"
                 % a["ack_wait_s"],
                 "QMP add completed after %d ms" % a["completed_ms"],
                 "guest: pci-add %s +%.2f s, blk-add %s +%.2f s"
                 % (a["bdf"], a["guest_pci_s"], a["disk"], a["guest_disk_s"]),
                 "guest reads the pattern written before: %s; writes again: ok"
                 % text])

    def t_qmp_surprise(self):
        vm, a = self.vm, self.dev
        r = h.surprise_qmp(vm, "rp1", "nvme0", a["bdf"], a["disk"])
        check(r["cause"] == "qmp", "cause %s" % r["cause"])
        _, ping, _, _ = vm.agent.call("ping")
        check(not lspci_has(vm, a["bdf"]), "guest lspci still lists the device")
        h.wait_port_empty(vm, "rp1", 30)
        check(vm.alive(), "QEMU died")
        return ("surprise removal over QMP (removal=surprise + device_del): the "
                "guest drops the device at once and keeps running",
                ["QMP surprise-remove completed after %d ms, DEVICE_DELETED after "
                 "%d ms" % (r["completed_ms"], r["deleted_ms"]),
                 "guest: blk-del +%.2f s, pci-del +%.2f s; agent: %s"
                 % (r["guest_disk_gone_s"], r["guest_pci_gone_s"], ping)])


def evidence_on_failure(m):
    out = ["logs: %s" % m.run]
    vm = m.vm
    if vm is None:
        return out
    if vm.proc is not None:
        try:
            vm.proc.wait(3)     # an aborting QEMU takes a moment to go
        except Exception:
            pass
    out.append("QEMU %s; log tail: %s"
               % ("running" if vm.alive() else
                  "exited with %s" % (vm.proc.returncode if vm.proc else "?"),
                  vm.tail_log(4)))
    if vm.alive() and vm.agent and not vm.agent.closed and not vm.qmp.closed:
        try:
            _, _, lines, _ = vm.agent.call("dmesg-tail 12", timeout=10, check=False)
            out += ["guest dmesg: " + l for l in lines]
        except h.HarnessError as e:
            out.append("guest agent does not answer: %s" % e)
    try:
        evs = ["%s %s" % (e["event"], e.get("data", {})) for _, e in vm.qmp.events[-6:]]
        out += ["QMP event: " + e for e in evs]
    except Exception:
        pass
    return out


def run_mode(mode):
    m = ModeRun(mode)
    note("mode %s: logs in %s" % (mode, m.run))
    try:
        h.run_tap_tests(m, mode, TESTS, evidence_on_failure)
    finally:
        m.cleanup()


if __name__ == "__main__":
    h.tap_main(TESTS, run_mode)
