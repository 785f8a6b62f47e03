#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""libvirt's own <hostdev> flow on the passthrough ports (TAP).

The example domain docs/config/nvme-passthru-hotplug.xml runs under a
real libvirtd (see libvirtd.py: private mount namespace, TCG, mem-lock
through <qemu:commandline>) in ACPI and in native PCIe hotplug mode,
driven with virsh only, the way Nova, oVirt or virt-manager drive it:
libvirt's view of a <hostdev> on a passthrough port, what the ports
refuse as the virsh user sees it, where libvirt places a disk when the
ordinary ports are full, how long libvirt's detach waits in each mode,
and that none of this taints the domain beyond the override's
"custom-device".

These machines have no IOMMU, and libvirt refuses every PCI <hostdev>
on such a host ("host doesn't support passthrough of host PCI
devices").  In libvirtd's private mount namespace the test fakes what
libvirt looks at for that verdict, and nothing else:

- /sys/kernel/iommu_groups: a tmpfs with one (empty) group, 17, so that
  the folder has an entry (virHostHasIOMMU);
- /dev/vfio/vfio: an empty file in an overlay over the host's /dev
  (libvirt only checks that it exists); the host's /dev is not changed.

There is no fake PCI device, and libvirtd lacks CAP_SYS_RESOURCE here:
a hot-added <hostdev> gets past libvirt's address and hotplug checks
and stops where libvirt raises QEMU's memory lock limit, before it
touches the host device or QEMU.  The whole flow with a real device and
/dev/vfio is tested in the nested bed (tests/nested/).

virt-nvme-hotplug's kernel VFIO add runs against a synthetic host of its
own (VIRT_NVME_HOTPLUG_ROOT, tests/host/faketree.py): an idle NVMe at
0000:3b:00.0, alone in IOMMU group 1, which the tool's host checks
pass.

Usage: tests/guest/libvirt-hostdev-test.py [acpi|native ...] (as root)
"""

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402
import libvirtd as lv  # noqa: E402

TESTS = [
    "start",
    "domxml-to-native",
    "hostdev-attach",
    "tool-hostdev",
    "disk-on-port",
    "nic-on-port",
    "auto-placement",
    "detach-wait",
    "untainted",
]

# What a passthrough port says to a device it does not take
PORT_REFUSAL = ("error: internal error: unable to execute QEMU command "
                "'device_add': pcie-hotplug-passthru port '%s' accepts only "
                "vfio-pci, vfio-nvme and vfio-user-nvme devices, not '%s'")
FAKE_BDF = "0000:3b:00.0"

tap, Fail, check = h.tap, h.Fail, h.check


class Run:
    def __init__(self, mode):
        self.mode = mode
        self.run = h.new_run_dir("libvirt-hostdev-" + mode)
        self.libvirtd = lv.Libvirtd(self.run)
        self.agent = None
        self.can_raise = lv.can_raise_memlock()

    def stop(self):
        if self.agent:
            self.agent.close()
        self.libvirtd.stop()

    def evidence(self):
        return lv.evidence(self.run)

    # ---- the fakes (see the module's comment) --------------------------

    def fake_sysfs(self):
        """An idle NVMe bound to the host's nvme driver, alone in its IOMMU
        group, for the tool (tests/host/faketree.py)."""
        t = lv.FakeHost(os.path.join(self.run, "toolroot"))
        t.nvme(FAKE_BDF)
        return t.root

    # ---- helpers --------------------------------------------------------

    def dumpxml(self):
        _, xml, _ = lv.virsh("dumpxml", lv.DOMAIN, check_rc=0)
        return ET.fromstring(xml)

    def disks(self):
        """target dev -> PCI bus (int) of the live domain's disks"""
        out = {}
        for d in self.dumpxml().find("devices").findall("disk"):
            addr = d.find("address")
            out[d.find("target").get("dev")] = int(addr.get("bus"), 16)
        return out

    def refused_by_port(self, rc, err, port, driver):
        check(rc == 1 and (PORT_REFUSAL % (port, driver)) in err,
              "virsh: exit %d, not the refusal of %s: %s" % (rc, port, err))
        return err.strip().splitlines()[-1]

    def wait_pci_add(self, am):
        """The guest saw the new device (native mode: the slot is powered
        on; a removal asked earlier is refused, "guest is busy")."""
        ev = self.agent.wait_event("pci-add", None, 60, since=am)
        time.sleep(1)
        return ev

    # ---- the tests ------------------------------------------------------

    def t_start(self):
        ver = self.libvirtd.start(
            before_daemons=lambda: lv.fake_iommu(self.run))
        self.xml = lv.domain_xml(self.run, self.mode)
        lv.virsh("define", self.xml, check_rc=0)
        lv.virsh("start", lv.DOMAIN, check_rc=0)
        self.agent = h.Agent(os.path.join(self.run, "agent.sock"),
                             log=open(os.path.join(self.run, "agent.log"),
                                      "w"))
        _, up, kernel = self.agent.wait_ready(180)
        check("tainted: custom-device" in lv.qemu_log(),
              "no custom-device taint in the domain log")
        lib = re.search(r"Using library: libvirt (\S+)", ver)
        return ("libvirt %s started the example domain (%s hotplug); guest "
                "up after %.1f s" % (lib.group(1) if lib else "?", self.mode,
                                     up), ["kernel %s" % kernel])

    def t_domxml_to_native(self):
        """The example <hostdev> in the domain: a plain vfio-pci at 0.0 on
        the passthrough port, and nothing of libvirt's on those ports."""
        hostdev = open(lv.HOSTDEV_EXAMPLE).read()
        path = lv.domain_xml(self.run, self.mode,
                             os.path.join(self.run, "with-hostdev.xml"),
                             extra_devices=[hostdev])
        for xml in (lv.EXAMPLE, path):
            rc, out, err = lv.sh(["virt-xml-validate", xml, "domain"])
            check(rc == 0, "%s does not validate against libvirt's domain "
                  "schema: %s%s" % (xml, out, err))
        rc, argv, err = lv.virsh("domxml-to-native", "qemu-argv", path)
        check(rc == 0, "domxml-to-native: %s" % err)
        devs = [json.loads(m) for m in
                re.findall(r"-device '(\{[^']*\})'", argv)]
        nvme = [d for d in devs if d.get("id") == "ua-nvme1"]
        want = {"driver": "vfio-pci", "host": FAKE_BDF, "id": "ua-nvme1",
                "bus": "ua-pt1", "addr": "0x0"}
        check(nvme == [want], "the hostdev became %s, not %s" % (nvme, want))
        ports = {d["id"]: d for d in devs if d.get("bus") == "pcie.0" and
                 "port" in d}
        for pt in ("ua-pt1", "ua-pt2"):
            check(ports.get(pt, {}).get("driver") == "pcie-hotplug-passthru",
                  "%s is not pcie-hotplug-passthru: %s" % (pt, ports.get(pt)))
            check("hotplug" not in ports[pt],
                  "%s: libvirt sets hotplug: %s" % (pt, ports[pt]))
        plain = sorted(i for i, p in ports.items()
                       if p["driver"] == "pcie-root-port")
        check(plain == ["pci.1", "pci.2", "pci.3"],
              "ordinary root ports: %s" % plain)
        on_pt = [d["driver"] for d in devs
                 if d.get("bus") in ("ua-pt1", "ua-pt2")]
        check(on_pt == ["vfio-pci"], "on the passthrough ports: %s" % on_pt)
        placed = {d["driver"]: d.get("bus") for d in devs
                  if d.get("bus", "").startswith("pci.")}
        check(placed.get("virtio-blk-pci") == "pci.1" and
              placed.get("qemu-xhci") == "pci.2",
              "disk and USB not on ports 1, 2: %s" % placed)
        return ("the example (with the example <hostdev>) validates; "
                "domxml-to-native: the <hostdev> is a plain vfio-pci at 0.0 "
                "on ua-pt1; disk and USB on ordinary ports",
                [json.dumps(nvme[0]), json.dumps(ports["ua-pt1"])])

    def t_hostdev_attach(self):
        """virsh attach-device of the example: libvirt takes the passthrough
        port (no hotplug refusal) and stops at the host's memory lock."""
        rc, out, err = lv.virsh("attach-device", lv.DOMAIN,
                                lv.HOSTDEV_EXAMPLE, "--live")
        check(rc == 1 and "Failed to attach device" in err,
              "attach-device: exit %d: %s%s" % (rc, out, err))
        check(not any(s in err for s in lv.HOTPLUG_OFF),
              "libvirt refused the port for hotplug: %s" % err)
        if not self.can_raise:
            check(lv.MEMLOCK in err,
                  "not libvirt's memory lock step: %s" % err)
        check(self.dumpxml().find("devices/hostdev") is None,
              "a hostdev stayed in the live XML")
        return ("attach-device of a <hostdev> on ua-pt1: past libvirt's "
                "hotplug checks, stops at %s" %
                ("the memory lock (no CAP_SYS_RESOURCE)" if not self.can_raise
                 else "the host device"),
                [err.strip().splitlines()[-1]])

    def t_tool_hostdev(self):
        """virt-nvme-hotplug adds a host NVMe through libvirt's <hostdev>:
        its checks, then libvirt's own error, exit 1.  --no-admission:
        the admission query goes through libvirt's monitor passthrough,
        which taints the domain custom-monitor (libvirt-test.py tests the
        query); this test shows the <hostdev> flow itself does not."""
        env = dict(os.environ, VIRT_NVME_HOTPLUG_ROOT=self.fake_sysfs())
        out = []
        for args, rc_want, want in (
                (("ua-pt1", "nvme-k"), 2, "begin with 'ua-'"),
                (("pci.3", "ua-nvme-k"), 2, "not a passthrough port"),
                (("ua-pt1", "ua-nvme-k"), 1,
                 "libvirt could not add %s as a <hostdev>: " % FAKE_BDF)):
            rc, o, e = lv.sh([lv.TOOL, "-c", lv.URI, "--json", lv.DOMAIN,
                              "add"] + list(args) +
                             ["--host", FAKE_BDF, "--no-admission"], env=env)
            r = json.loads(o) if o.strip() else {"reason": e}
            check(rc == rc_want and want in r.get("reason", ""),
                  "add %s: exit %d (want %d): %s" % (" ".join(args), rc,
                                                     rc_want, r))
            out.append("%s -> exit %d: %s" % (" ".join(args), rc, r["reason"]))
        if not self.can_raise:
            check(lv.MEMLOCK in r["reason"] and
                  "CAP_SYS_RESOURCE" in r["reason"],
                  "not libvirt's memory lock error with the hint: %s" % r)
        check(self.dumpxml().find("devices/hostdev") is None,
              "a hostdev stayed in the live XML")
        return ("virt-nvme-hotplug --host asks libvirt for a <hostdev> and "
                "reports libvirt's error (exit 1)", out)

    def t_disk_on_port(self):
        img = h.make_image(os.path.join(self.run, "vdx.img"), 16)
        path = os.path.join(self.run, "disk-on-pt.xml")
        with open(path, "w") as f:
            f.write("<disk type='file' device='disk'>"
                    "<driver name='qemu' type='raw'/>"
                    "<source file='%s'/><target dev='vdx' bus='virtio'/>"
                    "<address type='pci' domain='0x0000' bus='0x04' "
                    "slot='0x00' function='0x0'/></disk>" % img)
        rc, _, err = lv.virsh("attach-device", lv.DOMAIN, path, "--live")
        line = self.refused_by_port(rc, err, "ua-pt1", "virtio-blk-pci")
        check("vdx" not in self.disks(), "vdx stayed in the live XML")
        return "a disk addressed to ua-pt1: virsh shows the port's refusal", [
            line]

    def t_nic_on_port(self):
        path = os.path.join(self.run, "nic-on-pt.xml")
        with open(path, "w") as f:
            f.write("<interface type='user'><model type='virtio'/>"
                    "<address type='pci' domain='0x0000' bus='0x05' "
                    "slot='0x00' function='0x0'/></interface>")
        rc, _, err = lv.virsh("attach-device", lv.DOMAIN, path, "--live")
        line = self.refused_by_port(rc, err, "ua-pt2", "virtio-net-pci")
        check(self.dumpxml().find("devices/interface") is None,
              "the NIC stayed in the live XML")
        return "a NIC addressed to ua-pt2: virsh shows the port's refusal", [
            line]

    def t_auto_placement(self):
        """attach-disk without an address: the free ordinary port first;
        when the ordinary ports are full libvirt picks ua-pt1, and the
        port refuses the disk."""
        res = []
        am = self.agent.mark()
        for n in ("b", "c"):
            img = h.make_image(os.path.join(self.run, "vd%s.img" % n), 16)
            rc, out, err = lv.virsh("attach-disk", lv.DOMAIN, img, "vd" + n,
                                    "--targetbus", "virtio", "--live")
            res.append((rc, (out + err).strip()))
            if n == "b":
                check(rc == 0 and self.disks().get("vdb") == 3,
                      "vdb: %s, disks %s" % (res[0], self.disks()))
                self.wait_pci_add(am)
        rc, text = res[1]
        line = self.refused_by_port(rc, text, "ua-pt1", "virtio-blk-pci")
        check("vdc" not in self.disks(), "vdc stayed in the live XML")
        return ("attach-disk: vdb on ordinary port 3; vdc, with the ordinary "
                "ports full, auto-placed on ua-pt1 and refused there",
                [res[0][1], text.replace("\n", " | "), line])

    def disk_xml(self, dev):
        for d in self.dumpxml().find("devices").findall("disk"):
            if d.find("target").get("dev") == dev:
                return ET.tostring(d, encoding="unicode")
        raise Fail("no disk %s" % dev)

    def t_detach_wait(self):
        """libvirt's detach waits 5 s for DEVICE_DELETED: enough for ACPI
        hotplug; in native mode (the guest's 5 s attention-button wait)
        virsh reports success while the device is still there."""
        path = os.path.join(self.run, "vdb.xml")
        with open(path, "w") as f:
            f.write(self.disk_xml("vdb"))
        alias = self.dumpxml().find(
            "devices/disk/target[@dev='vdb']/../alias").get("name")
        ev = subprocess.Popen(
            ["virsh", "-c", lv.URI, "event", lv.DOMAIN, "--event",
             "device-removed", "--loop", "--timeout", "40"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        am = self.agent.mark()
        t0 = time.monotonic()
        rc, out, err = lv.virsh("detach-device", lv.DOMAIN, path, "--live",
                                timeout=60)
        took = time.monotonic() - t0
        still = "vdb" in self.disks()
        check(rc == 0 and "Device detached successfully" in out,
              "detach-device: exit %d: %s%s" % (rc, out, err))
        self.agent.wait_event("pci-del", None, 30, since=am)
        h.wait_for(lambda: "vdb" not in self.disks(), 30,
                   "vdb gone from the live XML", step=0.1)
        gone = time.monotonic() - t0
        if self.mode == "acpi":
            check(took < 4.5 and not still,
                  "ACPI: detach-device took %.1f s, vdb still listed: %s"
                  % (took, still))
        else:
            check(took >= 4.9 and still and gone > took,
                  "native: detach-device took %.1f s (libvirt waits 5 s), "
                  "vdb still listed at its return: %s, gone after %.1f s"
                  % (took, still, gone))
        ev.terminate()
        events = ev.communicate(timeout=30)[0]
        check("device-removed" in events and alias in events,
              "virsh event showed no device-removed for %s: %s"
              % (alias, events))
        diag = [l for l in events.splitlines() if alias in l]
        diag.append("detach-device: %.1f s, '%s'" % (took, out.strip()))
        # detach-device-alias does not wait: it returns after device_del
        am = self.agent.mark()
        img = os.path.join(self.run, "vdb.img")
        lv.virsh("attach-disk", lv.DOMAIN, img, "vdb", "--targetbus",
                 "virtio", "--live", check_rc=0)
        self.wait_pci_add(am)
        alias = self.dumpxml().find(
            "devices/disk/target[@dev='vdb']/../alias").get("name")
        am = self.agent.mark()
        t0 = time.monotonic()
        rc, out_alias, err = lv.virsh("detach-device-alias", lv.DOMAIN,
                                      alias, "--live", timeout=60)
        took_alias = time.monotonic() - t0
        check(rc == 0 and took_alias < 4.5 and
              "Device detach request sent successfully" in out_alias,
              "detach-device-alias: exit %d after %.1f s: %s%s"
              % (rc, took_alias, out_alias, err))
        self.agent.wait_event("pci-del", None, 30, since=am)
        h.wait_for(lambda: "vdb" not in self.disks(), 30,
                   "vdb gone from the live XML", step=0.1)
        gone_alias = time.monotonic() - t0
        diag.append("detach-device-alias: %.1f s, '%s', gone after %.1f s"
                    % (took_alias, out_alias.strip(), gone_alias))
        return ("%s: detach-device returned after %.1f s with '%s', vdb %s "
                "in the live XML then, gone after %.1f s; "
                "detach-device-alias returned after %.1f s"
                % (self.mode, took, out.strip(),
                   "still" if still else "no longer", gone, took_alias),
                diag)

    def t_untainted(self):
        """After every virsh step, and virsh qemu-monitor-event: no
        custom-monitor, only the override's custom-device (and the test's
        own custom-argv, high-privileges)."""
        # It ends with exit 1, "event loop timed out", after a second
        rc, out, err = lv.virsh("qemu-monitor-event", lv.DOMAIN, "--event",
                                "PASSTHRU_HOTPLUG", "--timeout", "1")
        check("timed out" in out + err, "qemu-monitor-event: exit %d: %s%s"
              % (rc, out, err))
        taints = set(re.findall(r"tainted: (\S+)", lv.qemu_log()))
        _, info, _ = lv.virsh("dominfo", lv.DOMAIN, check_rc=0)
        check("custom-monitor" not in taints and
              "custom monitor" not in info,
              "tainted custom-monitor: %s | %s" % (taints, info))
        check(taints - lv.TEST_TAINTS - {"high-privileges"} ==
              {"custom-device"}, "taints: %s" % taints)
        msgs = [l.strip() for l in info.splitlines()
                if "tainted" in l]
        return ("the domain is tainted only by the override (custom-device) "
                "and the test's own settings", sorted(taints) + msgs)


def main():
    modes = [m for m in (sys.argv[1:] or ["acpi", "native"])]
    if not lv.in_private_namespace(["%s/%s" % (m, t) for m in modes
                                    for t in TESTS]):
        return

    def run_mode(mode):
        run = Run(mode)
        try:
            h.run_tap_tests(run, "libvirt-hostdev/" + mode, TESTS,
                            Run.evidence)
        finally:
            run.stop()

    h.tap_main(TESTS, run_mode)


if __name__ == "__main__":
    main()
