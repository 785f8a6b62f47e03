#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""virt-vmx-import's domain under a real libvirtd (TAP).

The converter's own test (tests/vmx-import/vmx-import-test.py) checks
its XML element by element and against libvirt's schema; this one hands
the XML to libvirt 11.3 (libvirtd.py: a private libvirtd in a private
mount namespace, with the faked IOMMU of libvirt-hostdev-test.py, since
libvirt refuses every PCI <hostdev> on a host without one):

- the ESX 4 note's sample (tests/vmx-import/esx4-vmdirectpath.vmx) with
  --uefi, and a hot-add variation of it (fixedPassthruHotPlugEnabled:
  two spare ports more), converted on a synthetic host that has the
  sample's two NVMe controllers (tests/vmx-import/sample.py), with
  --type qemu (no usable KVM here) and --emulator the fork's QEMU;
- virsh define of both, and virsh domxml-to-native: the passthrough
  ports are pcie-hotplug-passthru with the ua-ptN aliases, each
  pciPassthruN one vfio-pci at 0.0 on its port, nothing else there;
- virsh start of the hot-add domain without its <hostdev>s (the host
  devices do not exist here): QEMU runs under TCG with OVMF, and
  query-passthru-hotplug and info pci (virsh qemu-monitor-command, which
  taints the domain "custom-monitor": fine in a test) list the four
  ports, empty, and the domain is tainted only "custom-device" by the
  domain itself;
- virsh attach-device --live of pciPassthru0's <hostdev>, as converted,
  on the spare port ua-pt3: libvirt takes the port for hotplug and stops
  where libvirt-hostdev-test.py's hot-add stops on these machines, at
  the memory lock, before it touches a host device or QEMU.

The hot-add variation's disks are files beside its .vmx (relative
fileName, as after copying the VM's folder): the disk an ESX-style VMDK
(a descriptor and its flat extent), the CD-ROM a small raw image, so
that QEMU opens them as the converter wrote them.  The sample's disks
(/volumes/your-path/...) stay as they are: define and domxml-to-native
do not open them.  The only edits of converted XML are for the start:
the <hostdev>s are taken out, and <locked/> is replaced by QEMU's own
-overcommit mem-lock=on (libvirtd.lock_by_qemu: libvirt cannot raise
RLIMIT_MEMLOCK here).

Usage: tests/guest/vmx-import-libvirt-test.py (as root; make tools and
make build first)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402
import libvirtd as lv  # noqa: E402

sys.path.insert(0, os.path.join(h.TOP, "tests", "vmx-import"))
from sample import DEV0, DEV1, SAMPLE, host, vmx  # noqa: E402

TESTS = [
    "convert",
    "define",
    "domxml-to-native",
    "start",
    "ports-listed",
    "hot-add",
]
TOOL = os.path.join(h.BUILD, "tools", "virt-vmx-import")
# The domains: the sample, and its hot-add variation
SAMPLE_DOM = "RHEL3"
HOTADD_DOM = "RHEL3-hotadd"
# An ESX disk: its descriptor (the .vmdk the .vmx names), a flat extent
VMDK = """# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
RW %d VMFS "passthru-flat.vmdk"

# The Disk Data Base
#DDB
ddb.adapterType = "lsilogic"
ddb.virtualHWVersion = "7"
"""
DISK_MIB = 8

tap, Fail, check = h.tap, h.Fail, h.check


def argv_devices(argv):
    """The -device JSON objects of a qemu-argv, in order"""
    return [json.loads(m) for m in re.findall(r"-device '(\{[^']*\})'", argv)]


class Run:
    def __init__(self):
        self.run = h.new_run_dir("vmx-import-libvirt")
        self.libvirtd = lv.Libvirtd(self.run)
        self.xml = {}       # domain -> converted XML file
        self.started = False

    def stop(self):
        if self.started:
            lv.virsh("destroy", HOTADD_DOM, timeout=60)
        self.libvirtd.stop()

    def evidence(self):
        out = []
        f = "/var/log/libvirt/qemu/%s.log" % HOTADD_DOM
        if os.path.exists(f):
            with open(f) as fh:
                out.append("%s: ...%s" % (f, " | ".join(
                    fh.read().splitlines()[-6:])))
        return out + ["run folder: %s" % self.run]

    def convert(self, name, path, *args):
        out = os.path.join(self.run, name + ".xml")
        rc, _, err = lv.sh([TOOL, "--root", self.host.root, "--uefi",
                            "--type", "qemu", "--emulator", h.qemu_binary(),
                            "--name", name, "-o", out] + list(args) + [path])
        check(rc == 0, "%s: exit %d: %s" % (path, rc, err))
        self.xml[name] = out
        return err.strip().splitlines()[-1]

    # ---- the tests ------------------------------------------------------

    def t_convert(self):
        """The sample and its hot-add variation, on the sample's host"""
        if not os.access(TOOL, os.X_OK):
            raise Fail("%s is missing (make tools)" % TOOL)
        self.host = host(self.run)
        # the hot-add variation: its disks beside it
        folder = os.path.join(self.run, "hotadd")
        os.makedirs(folder)
        flat = h.make_image(os.path.join(folder, "passthru-flat.vmdk"),
                            DISK_MIB)
        with open(os.path.join(folder, "passthru.vmdk"), "w") as f:
            f.write(VMDK % (os.path.getsize(flat) // 512))
        h.make_image(os.path.join(folder, "your-iso-image"), 1)
        hotadd = vmx(folder, {"fixedPassthruHotPlugEnabled": "TRUE",
                              "scsi0:0.fileName": "passthru.vmdk",
                              "ide0:0.fileName": "your-iso-image"})
        said = [self.convert(SAMPLE_DOM, SAMPLE),
                self.convert(HOTADD_DOM, hotadd)]
        for name, n in ((SAMPLE_DOM, 2), (HOTADD_DOM, 4)):
            d = ET.parse(self.xml[name]).getroot()
            emulator = d.find("devices/emulator").text
            check(d.get("type") == "qemu" and emulator == h.qemu_binary(),
                  "%s: type %s, emulator %s" % (name, d.get("type"),
                                                emulator))
            aliases = [a.get("name") for a in d.iter("alias")
                       if a.get("name").startswith("ua-pt")]
            check(aliases == ["ua-pt%d" % i for i in range(1, n + 1)],
                  "%s: passthrough ports %s" % (name, aliases))
        return ("virt-vmx-import --uefi --type qemu: the sample (2 ports) and "
                "its hot-add variation (4 ports, disks beside its .vmx)",
                said)

    def t_define(self):
        """virsh define of both; libvirt keeps the ua- aliases"""
        for exe in ("libvirtd", "virtlogd", "virsh"):
            if not shutil.which(exe):
                raise Fail("%s is missing: install libvirt-daemon-driver-qemu "
                           "and libvirt-clients (scripts/install-deps.sh)"
                           % exe)
        ver = self.libvirtd.start(
            before_daemons=lambda: lv.fake_iommu(self.run))
        out = [l for l in ver.splitlines() if "library" in l][-1:]
        for name in (SAMPLE_DOM, HOTADD_DOM):
            rc, o, err = lv.virsh("define", self.xml[name])
            check(rc == 0, "define %s: %s%s" % (name, o, err))
            _, xml, _ = lv.virsh("dumpxml", name, "--inactive", check_rc=0)
            d = ET.fromstring(xml)
            hd = [(a.get("name"), d2.get("bus")) for a, d2 in
                  ((x.find("alias"), x.find("address"))
                   for x in d.findall("devices/hostdev"))]
            check(hd == [("ua-nvme0", "0x04"), ("ua-nvme1", "0x05")],
                  "%s: the hostdevs as defined: %s" % (name, hd))
            out.append(o.strip())
        return "virsh define: both domains, their hostdevs on ports 4, 5", out

    def t_domxml_to_native(self):
        """The ports are the fork's, each device a vfio-pci at 0.0 on its
        port, nothing else on the ports"""
        out = []
        for name, n in ((SAMPLE_DOM, 2), (HOTADD_DOM, 4)):
            rc, argv, err = lv.virsh("domxml-to-native", "qemu-argv",
                                     "--domain", name)
            check(rc == 0, "domxml-to-native %s: %s" % (name, err))
            with open(os.path.join(self.run, name + ".argv"), "w") as f:
                f.write(argv)
            check(re.search(r" -accel tcg\b", argv), "%s: not TCG" % name)
            devs = argv_devices(argv)
            ports = [d for d in devs if d["driver"] == "pcie-hotplug-passthru"]
            want = ["ua-pt%d" % i for i in range(1, n + 1)]
            check([p["id"] for p in ports] == want and
                  all(p["bus"] == "pcie.0" for p in ports),
                  "%s: passthrough ports %s" % (name, ports))
            plain = [d["id"] for d in devs if d["driver"] == "pcie-root-port"]
            check(plain == ["pci.1", "pci.2", "pci.3"],
                  "%s: ordinary ports %s" % (name, plain))
            vfio = [d for d in devs if d["driver"] == "vfio-pci"]
            want_vfio = [{"driver": "vfio-pci", "host": DEV0[0],
                          "id": "ua-nvme0", "bus": "ua-pt1", "addr": "0x0"},
                         {"driver": "vfio-pci", "host": DEV1[0],
                          "id": "ua-nvme1", "bus": "ua-pt2", "addr": "0x0"}]
            check(vfio == want_vfio, "%s: vfio-pci %s" % (name, vfio))
            on_pt = [d["id"] for d in devs if d.get("bus") in want]
            check(on_pt == ["ua-nvme0", "ua-nvme1"],
                  "%s: on the passthrough ports: %s" % (name, on_pt))
            out += ["%s: %s" % (name, json.dumps(d)) for d in ports + vfio]
        return ("domxml-to-native: pcie-hotplug-passthru ua-pt1..2 (sample), "
                "ua-pt1..4 (hot-add), a vfio-pci at 0x0 on ua-pt1 and ua-pt2",
                out)

    def t_start(self):
        """The hot-add domain without its hostdevs runs under TCG"""
        ET.register_namespace("qemu", lv.QNS)
        _, xml, _ = lv.virsh("dumpxml", HOTADD_DOM, "--inactive", check_rc=0)
        d = ET.fromstring(xml)
        dev = d.find("devices")
        for x in dev.findall("hostdev"):
            dev.remove(x)
        lv.lock_by_qemu(d)
        path = os.path.join(self.run, HOTADD_DOM + "-nodev.xml")
        ET.ElementTree(d).write(path)
        lv.virsh("define", path, check_rc=0)
        rc, out, err = lv.virsh("start", HOTADD_DOM)
        self.started = rc == 0
        check(rc == 0, "start: %s%s" % (out, err))
        _, state, _ = lv.virsh("domstate", HOTADD_DOM, check_rc=0)
        check(state.strip() == "running", "domstate: %s" % state)
        with open("/var/log/libvirt/qemu/%s.log" % HOTADD_DOM) as f:
            log = f.read()
        check(re.search(r"-accel tcg\b", log) and
              "pcie-hotplug-passthru" in log and "passthru.vmdk" in log,
              "QEMU's command line in the log: %s" % log[-2000:])
        # the override's custom-device, and this test's settings only
        taints = set(re.findall(r"tainted: (\S+)", log))
        check(taints - lv.TEST_TAINTS - {"high-privileges"} ==
              {"custom-device"}, "taints: %s" % taints)
        return ("virsh start: the hot-add domain, without its <hostdev>s, "
                "runs under TCG (OVMF, its VMDK and CD-ROM), tainted only "
                "custom-device by the domain itself",
                [out.strip(), "taints: %s" % " ".join(sorted(taints))])

    def t_ports_listed(self):
        """query-passthru-hotplug and info pci list the four ports"""
        rc, out, err = lv.virsh("qemu-monitor-command", HOTADD_DOM,
                                '{"execute": "query-passthru-hotplug"}')
        check(rc == 0, "query-passthru-hotplug: %s%s" % (out, err))
        info = json.loads(out)["return"]
        ports = [(p["id"], p["state"], p.get("device")) for p in info["ports"]]
        want = [("ua-pt%d" % i, "empty", None) for i in range(1, 5)]
        check(info["enabled"] and ports == want,
              "query-passthru-hotplug: %s" % info)
        rc, pci, err = lv.virsh("qemu-monitor-command", HOTADD_DOM, "--hmp",
                                "info pci")
        check(rc == 0, "info pci: %s" % err)
        bridges = re.findall(r'PCI bridge: .*?\n(?:.*\n)*?\s*id "([^"]+)"',
                             pci)
        check(bridges == ["pci.1", "pci.2", "pci.3"] +
              [p[0] for p in want], "info pci: the bridges %s" % bridges)
        return ("query-passthru-hotplug: ua-pt1..4 empty, hotplug mode %s; "
                "info pci: the 3 ordinary and 4 passthrough ports"
                % info["hotplug-mode"],
                [json.dumps(info)])

    def t_hot_add(self):
        """virsh attach-device --live of pciPassthru0's <hostdev>, from
        the converted XML, on the spare port ua-pt3: libvirt takes the
        port for hotplug and stops at the memory lock"""
        bdf = DEV0[0]
        if os.path.exists("/sys/bus/pci/devices/" + bdf):
            raise Fail("this host has a PCI device at %s: the test does not "
                       "hand it to libvirt" % bdf)
        d = ET.parse(self.xml[HOTADD_DOM]).getroot()
        hd = d.find("devices/hostdev")
        hd.find("address").set("bus", "0x06")
        path = os.path.join(self.run, "hostdev-ua-pt3.xml")
        ET.ElementTree(hd).write(path)
        rc, out, err = lv.virsh("attach-device", HOTADD_DOM, path, "--live")
        check(rc == 1 and "Failed to attach device" in err,
              "attach-device: exit %d: %s%s" % (rc, out, err))
        check(not any(s in err for s in lv.HOTPLUG_OFF),
              "libvirt refused the port for hotplug: %s" % err)
        can_raise = lv.can_raise_memlock()
        if not can_raise:
            check(lv.MEMLOCK in err, "not libvirt's memory lock step: %s"
                  % err)
        _, xml, _ = lv.virsh("dumpxml", HOTADD_DOM, check_rc=0)
        check(ET.fromstring(xml).find("devices/hostdev") is None,
              "a hostdev stayed in the live XML")
        return ("attach-device of pciPassthru0's <hostdev> on the spare "
                "ua-pt3: past libvirt's hotplug checks, stops at %s" %
                ("the memory lock (no CAP_SYS_RESOURCE)" if not can_raise
                 else "the host device"), [err.strip().splitlines()[-1]])


def main():
    if not lv.in_private_namespace(TESTS):
        return
    print("1..%d" % len(TESTS))
    run = Run()
    try:
        h.run_tap_tests(run, "vmx-import-libvirt", TESTS, Run.evidence)
    finally:
        run.stop()


if __name__ == "__main__":
    main()
