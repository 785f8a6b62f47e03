#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""vfio-nvme against the real kernel: a nested test bed (tests/nested/bed.py)
with an emulated VT-d in L0, vfio-pci in L1 and the fork in qtest mode
as L2, whose guest qtest plays (tests/nested/qnvme.py).  One L0/L1 boot
for every test; a fresh L2 where a test needs one.  TAP on stdout.

Nothing is skipped: a missing piece of the bed is a failure."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bed as B  # noqa: E402
import qnvme as Q  # noqa: E402

h = B.h
check = h.check
LBA = 8                 # where L2 writes
BOUND_S = 10            # a host-side removal must return within this

TESTS = ["boot", "hot-add", "refusals", "orderly-removal",
         "host-remove", "host-unbind", "vfio-pci-hot-add",
         "vfio-pci-refusals", "vfio-pci-host-unbind", "l0-device-del",
         "l0-device-add", "aer-error"]
PCI_UNBIND_S = 1.0      # plain vfio-pci: host unbind -> surprise removal


class Run(B.Run):
    EVIDENCE = ("dmesg | tail -n 8", "dmesg | grep -i aer | tail -n 6")

    def __init__(self):
        super().__init__()
        self.bdf = None         # the NVMe behind L0's rp1, in L1

    # ---- helpers ----

    def new_l2(self, ports=2):
        if self.l2:
            self.l2.stop()
            self.l2 = None
        self.l2 = self.bed.start_l2(ports=ports)
        for n in range(1, ports + 1):
            Q.number_bus(self.l2.qt, n)
        return self.l2

    def hot_add(self, host, n=1, dev="nvme0", driver="vfio-nvme"):
        """device_add DRIVER on rp N of L2; the guest enables it."""
        return Q.hot_add(self.l2.qmp, self.l2.qt, host, n, dev, driver)

    def port(self, n):
        return Q.port_state(self.l2.qmp, n)

    def ack_surprise(self, n):
        """The guest saw the slot emptied; it ejects (ACPI _EJ0)."""
        Q.ack_surprise(self.l2.qt, self.l2.qmp, n)

    def surprise(self, dev, n, action, tag):
        """Run ACTION in L1's background while L2 holds DEV on rp N;
        L2 must surprise-remove with cause host-gone and ACTION return
        in bounded time.  Returns diagnostics."""
        qmp = self.l2.qmp
        m = qmp.mark()
        t0 = h.now()
        mark = self.bed.bg(tag, action)
        tc, ev, _ = qmp.wait_hotplug(dev, "surprise-remove", timeout=60,
                                     since=m)
        d = ev["data"]
        check(d["phase"] == "completed", "surprise-remove %s" % d)
        check(d.get("cause") == "host-gone", "cause %s, not host-gone"
              % d.get("cause"))
        td = B.wait_deleted(qmp, dev, m)
        rc, took, out = self.bed.wait_bg(tag, mark, 60)
        t_host = h.now() - t0
        check(rc == 0, "L1 '%s' failed: rc=%d %s" % (action, rc, out))
        check(took < BOUND_S, "L1 '%s' took %.1f s (bound %d s)"
              % (action, took, BOUND_S))
        check(self.l2.running() == "running", "L2 not running")
        self.times[tag] = (took, tc - t0)
        return ["L1 '%s' returned after %.2f s (L1 clock); L2 "
                "surprise-remove completed %.2f s after it was started "
                "(host clock), DEVICE_DELETED %.2f s; reason: %s"
                % (action, took, tc - t0, td - t0, d.get("reason")),
                "whole step on the host %.2f s" % t_host]

    def nvme_bdf_back(self):
        """After an L1 rescan: the NVMe is back behind rp1, with nvme."""
        self.bed.sh("echo 1 > /sys/bus/pci/rescan")
        h.wait_for(lambda: self.bed.sh("below 10", check=False) and
                   self.bed.sh("below 10", check=False)[0].startswith("0000"),
                   30, "the NVMe back in L1", step=0.5)
        return self.bed.slot_bdf(1)

    # ---- tests ----

    def t_boot(self):
        lines = B.build()
        self.bed = B.Bed("test").start()
        self.bdf = self.bed.slot_bdf(1)
        info = {n: self.bed.device_info(self.bed.slot_bdf(n)) for n in (1, 2, 3)}
        check(info[1] == ("0x010802", "nvme"), "rp1: %s" % (info[1],))
        check(info[2] == ("0x010802", "nvme"), "rp2: %s" % (info[2],))
        check(info[3][0] == "0x020000", "rp3: %s" % (info[3],))
        nic5, nvme5 = self.bed.slot_bdf(5), self.bed.slot_bdf(5, 1)
        info["5.0"] = self.bed.device_info(nic5)
        info["5.1"] = self.bed.device_info(nvme5)
        check(info["5.0"] == ("0x020000", "e1000e"), "rp5 0.0: %s"
              % (info["5.0"],))
        check(info["5.1"] == ("0x010802", "nvme"), "rp5 0.1: %s"
              % (info["5.1"],))
        grp = self.bed.group_devices(nvme5)
        check(grp == sorted([nic5, nvme5]), "the IOMMU group of %s holds %s"
              % (nvme5, grp))
        info["5 group"] = grp
        dmar = self.bed.sh("dmesg | grep -c 'DMAR: Intel(R) Virtualization'")
        check(dmar[0].strip() != "0", "no VT-d in L1")
        return ("L0 (TCG, intel-iommu) boots L1 (%s) in %.1f s; NVMe on "
                "rp1/rp2 bound to nvme, e1000e on rp3, e1000e + NVMe in one "
                "IOMMU group on rp5" % (self.bed.kernel, self.bed.boot_wall),
                lines[-1:] + ["%s: %s" % (k, v) for k, v in info.items()])

    def t_hot_add(self):
        vfio = self.bed.bind(self.bdf, "vfio-pci")
        t0 = h.now()
        self.new_l2()
        t_l2 = h.now() - t0
        cls, t_reply, state = self.hot_add(self.bdf)
        check(cls == 0x010802, "class %06x read in L2" % cls)
        d = Q.Nvme(self.l2.qt, 1).start()
        serial, model = d.identify()
        check(serial == "bed1", "Identify: serial %r, model %r" % (serial, model))
        d.write(LBA, 0x5a)
        data = d.read(LBA)
        check(data == b"\x5a" * 512, "read back %r..." % data[:16])
        d.flush()
        self.drv = d
        return ("vfio-nvme on %s (%s): class 01:08:02 from the device, BAR 0 "
                "(%d KiB) mapped, Identify serial %s, write+read+flush by DMA "
                "through the IOMMU" % (self.bdf, vfio, d.bar_size >> 10, serial),
                ["L2 started in %.1f s; device_add answered in %.2f s"
                 % (t_l2, t_reply), "port while adding: %s" % state,
                 "model %s" % model])

    def t_refusals(self):
        qmp = self.l2.qmp
        nic = self.bed.slot_bdf(3)
        self.bed.bind(nic, "vfio-pci")
        other = self.bed.slot_bdf(2)
        self.bed.bind(other, "vfio-pci")
        # an NVMe that shares its IOMMU group with an e1000e
        nic5, nvme5 = self.bed.slot_bdf(5), self.bed.slot_bdf(5, 1)
        self.bed.bind(nvme5, "vfio-pci")
        shared = ("vfio-nvme 'bad0': IOMMU group %s of %s also holds %s: "
                  "pass through a device that is alone in its group"
                  % (self.bed.sh("group %s" % nvme5)[0].strip(), nvme5, nic5))
        bind_nic5 = lambda: self.bed.bind(nic5, "vfio-pci")
        m = qmp.mark()
        errs = []
        for args, want, before in (
                ({"host": nic}, "is not an NVMe controller", None),
                ({"host": other, "x-pci-class-code": 0x010802},
                 "'x-pci-class-code' is not allowed", None),
                ({"host": other, "x-pci-vendor-id": 0x8086},
                 "'x-pci-vendor-id' is not allowed", None),
                # the partner on its host driver: the group is not viable
                ({"host": nvme5}, shared, None),
                # the partner on vfio-pci too: viable, but shared
                ({"host": nvme5}, shared, bind_nic5)):
            if before:
                before()
            reply, _ = qmp.send("device_add", driver="vfio-nvme", id="bad0",
                                bus="rp2", **args)
            desc = reply.get("error", {}).get("desc", "")
            check(want in desc, "device_add %s: %r, not ...%s..."
                  % (args, desc or reply, want))
            errs.append(desc)
        qmp.cmd("query-status")
        ev = [e for _, e in qmp.events[m:] if e["event"] == "PASSTHRU_HOTPLUG"]
        check(not ev, "refused adds sent events: %s" % ev)
        check(self.l2.running() == "running", "L2 not running")
        check(self.port(2)["state"] == "empty", "rp2 %s" % self.port(2))
        check(self.drv.read(LBA) == b"\x5a" * 512, "nvme0 broken")
        self.bed.bind(other, "nvme")
        self.bed.bind(nvme5, "nvme")
        self.bed.bind(nic5, "e1000e")
        return ("refused with real devices: e1000e by its class, identity "
                "overrides, an NVMe whose IOMMU group also holds an e1000e "
                "(on e1000e, then on vfio-pci); L2 runs on, nvme0 still "
                "answers", errs)

    def t_orderly_removal(self):
        Q.remove_orderly(self.l2.qmp, self.l2.qt, "nvme0", 1)
        self.l2.stop()
        self.l2 = None
        self.bed.bind(self.bdf, "nvme")
        disk = self.bed.nvme_disk(self.bdf)
        out = self.bed.sh("dd if=/dev/%s of=/tmp/blk bs=512 skip=%d count=1 "
                          "2>&1 >/dev/null | grep -v records; tr -d Z </tmp/blk "
                          "| wc -c; wc -c </tmp/blk" % (disk, LBA))
        check([x.strip() for x in out] == ["0", "512"],
              "L1 reads back %s (non-pattern bytes, bytes)" % out)
        return ("orderly removal (device_del + ACPI eject); L1 rebinds nvme "
                "and reads L2's block from /dev/%s" % disk, [])

    def t_host_remove(self):
        self.bed.bind(self.bdf, "vfio-pci")
        self.new_l2()
        self.hot_add(self.bdf)
        d = Q.Nvme(self.l2.qt, 1).start()
        d.identify()
        diag = self.surprise("nvme0", 1, "echo 1 > /sys/bus/pci/devices/%s/remove"
                             % self.bdf, "remove")
        self.ack_surprise(1)
        self.bdf = self.nvme_bdf_back()
        return ("L1 removes the device L2 holds: L2 surprise-removes "
                "(host-gone), the write returns in %.2f s" % self.times["remove"][0],
                diag)

    def t_host_unbind(self):
        self.bed.bind(self.bdf, "vfio-pci")
        self.hot_add(self.bdf)
        Q.Nvme(self.l2.qt, 1).start().identify()
        diag = self.surprise(
            "nvme0", 1, "echo %s > /sys/bus/pci/drivers/vfio-pci/unbind" % self.bdf,
            "unbind")
        self.ack_surprise(1)
        self.bed.bind(self.bdf, "nvme")
        return ("L1 unbinds vfio-pci under L2: L2 surprise-removes (host-gone), "
                "the write returns in %.2f s" % self.times["unbind"][0], diag)

    # plain vfio-pci, as libvirt's <hostdev> sends it: the same rules

    def t_vfio_pci_hot_add(self):
        vfio = self.bed.bind(self.bdf, "vfio-pci")
        cls, t_reply, state = self.hot_add(self.bdf, dev="pci0",
                                           driver="vfio-pci")
        check(cls == 0x010802, "class %06x read in L2" % cls)
        serial, _ = Q.Nvme(self.l2.qt, 1).start().identify()
        check(serial == "bed1", "Identify: serial %r" % serial)
        return ("plain vfio-pci on rp1 (%s): adding until the guest enables "
                "it, then completed; Identify serial %s" % (vfio, serial),
                ["device_add answered in %.2f s" % t_reply,
                 "port while adding: %s" % state])

    def t_vfio_pci_refusals(self):
        qmp = self.l2.qmp
        nic, other = self.bed.slot_bdf(3), self.bed.slot_bdf(2)
        nic5, nvme5 = self.bed.slot_bdf(5), self.bed.slot_bdf(5, 1)
        for bdf in (nic, nvme5, nic5):
            self.bed.bind(bdf, "vfio-pci")
        m = qmp.mark()
        errs = []
        for host, want in (
                (nic, "vfio-pci 'bad0': class code 02:00:00 is not an NVMe "
                 "controller (01:08:02)"),
                (nvme5, "vfio-pci 'bad0': IOMMU group %s of %s also holds "
                 "%s: pass through a device that is alone in its group"
                 % (self.bed.sh("group %s" % nvme5)[0].strip(), nvme5,
                    nic5))):
            reply, _ = qmp.send("device_add", driver="vfio-pci", id="bad0",
                                bus="rp2", host=host)
            desc = reply.get("error", {}).get("desc", "")
            check(want in desc, "device_add vfio-pci %s: %r, not ...%s..."
                  % (host, desc or reply, want))
            check(self.port(2)["state"] == "empty", "rp2 %s" % self.port(2))
            errs.append(desc)
        ev = [e for _, e in qmp.events[m:] if e["event"] == "PASSTHRU_HOTPLUG"]
        check(not ev, "refused adds sent events: %s" % ev)
        # the port is still usable: an NVMe goes in and out
        self.bed.bind(other, "vfio-pci")
        self.hot_add(other, n=2, dev="pci2", driver="vfio-pci")
        Q.remove_orderly(qmp, self.l2.qt, "pci2", 2)
        for bdf, drv in ((other, "nvme"), (nvme5, "nvme"), (nic5, "e1000e"),
                         (nic, "e1000e")):
            self.bed.bind(bdf, drv)
        return ("plain vfio-pci refused for the e1000e (class) and for the "
                "NVMe sharing its IOMMU group; rp2 stays empty and then takes "
                "an NVMe", errs)

    def t_vfio_pci_host_unbind(self):
        diag = self.surprise(
            "pci0", 1, "echo %s > /sys/bus/pci/drivers/vfio-pci/unbind"
            % self.bdf, "pci-unbind")
        took, tc = self.times["pci-unbind"]
        check(tc < PCI_UNBIND_S, "surprise removal %.2f s after the unbind "
              "started (bound %.1f s)" % (tc, PCI_UNBIND_S))
        self.ack_surprise(1)
        self.bed.bind(self.bdf, "nvme")
        return ("L1 unbinds the plain vfio-pci: surprise removal (host-gone) "
                "%.2f s after, the write returns in %.2f s" % (tc, took), diag)

    def t_l0_device_del(self):
        self.bed.bind(self.bdf, "vfio-pci")
        self.hot_add(self.bdf)
        Q.Nvme(self.l2.qt, 1).start().identify()
        qmp2 = self.l2.qmp
        m2, m0 = qmp2.mark(), self.bed.qmp.mark()
        t0 = h.now()
        self.bed.qmp.cmd("device_del", id="l0nvme1")
        tc, ev, _ = qmp2.wait_hotplug("nvme0", "surprise-remove", timeout=60,
                                      since=m2)
        check(ev["data"]["phase"] == "completed" and
              ev["data"].get("cause") == "host-gone", "L2: %s" % ev["data"])
        td = B.wait_deleted(self.bed.qmp, "l0nvme1", m0, 60)
        check(self.l2.running() == "running", "L2 not running")
        self.ack_surprise(1)
        self.times["l0-del"] = (td - t0, tc - t0)
        return ("L0 device_del of the NVMe: L2 surprise-removes after %.2f s, "
                "L0's DEVICE_DELETED after %.2f s" % (tc - t0, td - t0),
                ["reason: %s" % ev["data"].get("reason")])

    def t_l0_device_add(self):
        img = self.bed.p("nvme3.img")
        h.make_image(img, 64)
        q0 = self.bed.qmp
        q0.cmd("blockdev-add", driver="raw", **{"node-name": "d3"},
               file={"driver": "file", "filename": img})
        t0 = h.now()
        q0.cmd("device_add", driver="nvme", id="l0nvme3", bus="l0rp1",
               serial="bed3", drive="d3")
        self.bdf = h.wait_for(lambda: (self.bed.sh("below 10", check=False)
                                       or [""])[0].strip(), 60,
                              "the new NVMe in L1", step=0.5)
        seen = h.now() - t0
        h.wait_for(lambda: self.bed.device_info(self.bdf)[1] == "nvme", 30,
                   "nvme bound in L1", step=0.5)
        self.bed.bind(self.bdf, "vfio-pci")
        self.hot_add(self.bdf)
        serial, _ = Q.Nvme(self.l2.qt, 1).start().identify()
        check(serial == "bed3", "Identify serial %r" % serial)
        return ("L0 device_add of a new NVMe: L1 sees it after %.1f s, binds "
                "vfio-pci, L2 hot-adds it (Identify serial bed3)" % seen, [])

    def t_aer_error(self):
        if self.bed.device_info(self.bdf)[1] != "vfio-pci":
            self.bed.bind(self.bdf, "vfio-pci")
        if not self.l2 or self.port(1).get("state") != "present":
            self.new_l2()
            self.hot_add(self.bdf)
        qmp2 = self.l2.qmp
        m2 = qmp2.mark()
        t0 = h.now()
        out = self.bed.qmp.cmd("human-monitor-command",
                               **{"command-line":
                                  "pcie_aer_inject_error l0rp1 COMP_ABORT"})
        check("rror" not in out, "HMP pcie_aer_inject_error: %s" % out)
        tc, ev, _ = qmp2.wait_hotplug("nvme0", "surprise-remove", timeout=60,
                                      since=m2)
        check(ev["data"]["phase"] == "completed", "L2: %s" % ev["data"])
        check(self.l2.running() == "running", "L2 stopped: %s"
              % self.l2.running())
        self.times["aer"] = (tc - t0,)
        aer = self.bed.sh("dmesg | grep -i -e aer -e vfio -e 'pcieport' | "
                          "tail -n 6", check=False)
        return ("AER error on L1's root port: vfio-nvme surprise-removes "
                "after %.2f s (cause %s), L2 keeps running"
                % (tc - t0, ev["data"].get("cause")),
                ["HMP: %r" % out, "reason: %s" % ev["data"].get("reason")]
                + aer)


def main():
    B.tap_main(Run(), sys.argv[1:] or TESTS)


if __name__ == "__main__":
    main()
