#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""virt-vmx-import on the sample VMX of VMware's ESX 4 VMDirectPath note
(esx4-vmdirectpath.vmx) and variations of it, against synthetic hosts
(tests/host/faketree.py): the domain it writes, parsed and checked
element by element and validated with libvirt's virt-xml-validate, and
each refusal's exit status and message.  TAP on stdout.

The command must exist (make tools).  VMX_IMPORT_TOOL=PATH tests another
build (run-tests.sh: the ASan + UBSan one, whose reports fail the test).
"""

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "host"))
from faketree import Tree  # noqa: E402
import tap  # noqa: E402
from tap import eq, test  # noqa: E402
from sample import (DEV0, DEV1, SAMPLE, host, sample_lines,  # noqa: E402
                    vmx)

BUILD = os.environ.get("BUILD_DIR", os.path.join(TOP, "build"))
TOOL = os.path.realpath(os.environ.get("VMX_IMPORT_TOOL") or
                        os.path.join(BUILD, "tools", "virt-vmx-import"))
PROG = "virt-vmx-import"
QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def has(text, part, what="stderr"):
    if part not in text:
        raise AssertionError(f"{what} lacks {part!r}:\n{text}")


def at(path, key, level="error"):
    """How a message about KEY of PATH begins:
    'virt-vmx-import: LEVEL: PATH:LINE: KEY = "VALUE": '"""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            k, _, v = line.partition("=")
            if k.strip() == key:
                return f"{PROG}: {level}: {path}:{n}: {key} = {v.strip()}: "
    raise AssertionError(f"{key} not in {path}")


def run(tree, path, *args):
    """(status, stdout, stderr); no sanitizer report allowed"""
    cmd = [TOOL] + (["--root", tree.root] if tree else []) + list(args) + \
        [path]
    env = dict(os.environ)
    env.pop("NVME_PASSTHRU_HOST_ROOT", None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env=env)
    if re.search(r"Sanitizer|runtime error:", p.stderr):
        raise AssertionError(f"sanitizer report:\n{p.stderr}")
    return p.returncode, p.stdout, p.stderr


def validate(tmp, xml):
    """libvirt's own schema check (libvirt-clients, scripts/install-deps.sh)"""
    exe = shutil.which("virt-xml-validate")
    if not exe:
        raise AssertionError("virt-xml-validate is missing: install "
                             "libvirt-clients (scripts/install-deps.sh)")
    path = os.path.join(tmp, "domain.xml")
    with open(path, "w") as f:
        f.write(xml)
    p = subprocess.run([exe, path, "domain"], capture_output=True,
                       text=True)
    eq(p.returncode, 0, f"virt-xml-validate: {p.stdout}{p.stderr}")


def convert(tmp, tree, path, *args, status=0):
    """Convert, check the status, validate; the parsed domain and stderr"""
    rc, out, err = run(tree, path, *args)
    eq(rc, status, f"exit status; stderr:\n{err}")
    validate(tmp, out)
    return ET.fromstring(out), err


def refused(tree, path, message, *args, status=2):
    """PATH is refused with MESSAGE, nothing written"""
    rc, out, err = run(tree, path, *args)
    eq(rc, status, f"exit status; stderr:\n{err}")
    eq(out, "", "stdout")
    has(err, message)
    has(err, f"{PROG}: {path}: ")
    has(err, " no domain written\n")
    return err


def ports(dom):
    """{index: (alias or None, controller element)} of the root ports"""
    return {int(c.get("index")): (c.find("alias").get("name")
                                  if c.find("alias") is not None else None, c)
            for c in dom.findall("devices/controller[@type='pci']")
            if c.get("model") == "pcie-root-port"}


def overrides(dom):
    """{alias: driver} of <qemu:override>"""
    out = {}
    for d in dom.findall(f"{QEMU_NS}override/{QEMU_NS}device"):
        p = d.find(f"{QEMU_NS}frontend/{QEMU_NS}property[@name='driver']")
        out[d.get("alias")] = p.get("value")
    return out


def hostdevs(dom):
    """[(alias, host BDF, bus of its address, slot, function)]"""
    out = []
    for h in dom.findall("devices/hostdev"):
        eq((h.get("mode"), h.get("type"), h.get("managed")),
           ("subsystem", "pci", "yes"), "hostdev kind")
        s = h.find("source/address")
        a = h.find("address")
        eq(a.get("type"), "pci")
        bdf = "%04x:%02x:%02x.%x" % tuple(int(s.get(k), 16) for k in
                                          ("domain", "bus", "slot",
                                           "function"))
        out.append((h.find("alias").get("name"), bdf, int(a.get("bus"), 16),
                    int(a.get("slot"), 16), int(a.get("function"), 16)))
    return out


def passthru_ports(dom, n):
    """The domain has N passthrough ports ua-pt1..N after three ordinary
    ones, each overridden to pcie-hotplug-passthru, none hotplug='off';
    {alias: index}"""
    p = ports(dom)
    eq(sorted(p), list(range(1, 4 + n)), "root port indexes")
    for i in (1, 2, 3):
        eq(p[i][0], None, f"ordinary port {i} has no alias")
    want = {f"ua-pt{k}": 3 + k for k in range(1, n + 1)}
    eq({p[i][0]: i for i in p if p[i][0]}, want, "passthrough ports")
    eq(overrides(dom), {a: "pcie-hotplug-passthru" for a in want},
       "overrides")
    for i, (alias, c) in p.items():
        eq(c.find("target").get("hotplug"), None, f"port {i} hotplug")
    return want


def rules(dom):
    """What every domain must have: the fork's VM rules"""
    eq(dom.get("type"), "kvm")
    eq(dom.find("os").get("firmware"), "efi", "UEFI")
    eq(dom.find("os/type").get("machine"), "q35")
    eq(dom.find("os/firmware/feature[@name='secure-boot']").get("enabled"),
       "no")
    eq(dom.find("memoryBacking/locked") is not None, True, "memory locked")
    eq(dom.find("memoryBacking/source").get("type"), "memfd")
    eq(dom.find("maxMemory"), None, "no memory hotplug")
    eq(dom.find("vcpu").get("current"), None, "no CPU hotplug")
    eq(dom.find("devices/iommu"), None, "no vIOMMU")
    eq(dom.find("devices/emulator").text,
       "/usr/local/bin/qemu-system-x86_64")


# ------------------------------------------------------------------
# The sample


@test
def sample_bios_refused(tmp):
    """the sample as it is: no firmware key means BIOS, refused without
    --uefi, with the reason and the way out"""
    t = host(tmp)
    err = refused(t, SAMPLE, f"{PROG}: error: {SAMPLE}: firmware is not "
                  "set, so VMware boots the VM with BIOS: a passthrough-"
                  "hotplug VM boots with UEFI only")
    has(err, "then run again with --uefi")
    has(err, "1 error: no domain written")


@test
def sample_uefi(tmp):
    """the sample with --uefi: two hostdevs on ua-pt1/ua-pt2 in VMware's
    slot order, the domain's rules, a warning for the firmware"""
    t = host(tmp)
    dom, err = convert(tmp, t, SAMPLE, "--uefi")
    rules(dom)
    eq(dom.find("name").text, "RHEL3")
    eq((dom.find("memory").text, dom.find("memory").get("unit")),
       ("512", "MiB"))
    eq(dom.find("vcpu").text, "1")
    pt = passthru_ports(dom, 2)
    eq(hostdevs(dom), [("ua-nvme0", DEV0[0], pt["ua-pt1"], 0, 0),
                       ("ua-nvme1", DEV1[0], pt["ua-pt2"], 0, 0)])
    # the disk and the CD-ROM on SATA, the USB controller on port 1
    disks = [(d.get("device"), d.find("source").get("file"),
              d.find("target").get("bus"), d.find("driver").get("type"))
             for d in dom.findall("devices/disk")]
    eq(disks, [("disk", "/volumes/your-path/passthru.vmdk", "sata", "vmdk"),
               ("cdrom", "/volumes/your-path/your-iso-image", "sata",
                "raw")])
    eq(dom.find("devices/controller[@type='usb']/address").get("bus"),
       "0x01")
    has(err, f"{PROG}: warning: {SAMPLE}: firmware is not set (BIOS): "
        "--uefi: the domain boots with UEFI (OVMF)")
    has(err, f"{PROG}: domain 'RHEL3': 2 passthrough NVMe devices, 0 spare "
        "passthrough ports\n")
    eq(err.count("error"), 0, "no error")


@test
def sample_nothing_silently_dropped(tmp):
    """every key of the sample the domain does not use is listed as not
    carried over, with its line, once"""
    used = {"displayName", "memsize", "sched.mem.minsize", "scsi0:0.present",
            "scsi0:0.fileName", "scsi0:0.deviceType", "ide0:0.present",
            "ide0:0.startConnected", "ide0:0.fileName", "ide0:0.deviceType"}
    used |= {f"pciPassthru{n}.{k}" for n in (0, 1) for k in
             ("present", "deviceId", "vendorId", "id", "pciSlotNumber")}
    rc, out, err = run(host(tmp), SAMPLE, "--uefi")
    eq(rc, 0)
    dropped = re.findall(rf"^{PROG}: not carried over: {re.escape(SAMPLE)}:"
                         r"(\d+): ([^ ]+) = ", err, re.M)
    want = []
    for n, line in enumerate(sample_lines(), 1):
        if "=" in line and not line.startswith("#"):
            key = line.split("=")[0].strip()
            if key not in used:
                want.append((str(n), key))
    eq(dropped, want, "not carried over")
    has(err, "pciBridge4.virtualDev = \"pcieRootPort\": VMware's PCI "
        "bridges")
    has(err, "pciPassthru0.systemId = \"48c4619b-6d58-18db-2a0e-"
        "000423d1e6f6\": the ESX host the device was on")


@test
def efi_firmware(tmp):
    """firmware = "efi" converts without --uefi and without a warning"""
    path = vmx(tmp, {"firmware": "efi"})
    dom, err = convert(tmp, host(tmp), path)
    rules(dom)
    eq("warning" in err, False, f"no warning:\n{err}")


@test
def bios_firmware(tmp):
    """firmware = "bios" is refused naming the key and line; with --uefi
    it becomes UEFI with a warning on that line"""
    path = vmx(tmp, {"firmware": "bios"})
    t = host(tmp)
    refused(t, path, at(path, "firmware") + "a passthrough-hotplug VM boots "
            "with UEFI only")
    dom, err = convert(tmp, t, path, "--uefi")
    rules(dom)
    has(err, at(path, "firmware", "warning") + "--uefi: the domain boots "
        "with UEFI (OVMF): the guest must have a UEFI boot loader")
    path = vmx(tmp, {"firmware": "coreboot"}, name="cb.vmx")
    refused(t, path, at(path, "firmware") + "unknown firmware: 'efi' or "
            "'bios'", "--uefi")


@test
def secure_boot(tmp):
    """uefi.secureBoot.enabled is listed: the domain runs without it"""
    path = vmx(tmp, {"firmware": "efi", "uefi.secureBoot.enabled": "TRUE"})
    dom, err = convert(tmp, host(tmp), path)
    has(err, at(path, "uefi.secureBoot.enabled", "not carried over") +
        "the domain boots OVMF without secure boot")


# ------------------------------------------------------------------
# pciPassthruN


@test
def bad_ids(tmp):
    """malformed pciPassthru0.id values: each refused naming key, value
    and line"""
    t = host(tmp)
    for i, bad in enumerate(["zz:00.0", "03:00", "03:20.0", "3:0.0",
                             "0000:03:00.0x", "", "00000:256:00.0",
                             "00000:013:32.0", "0000:003:00.0",
                             "00000:03:00.0", "03-00.0", "03:00.8"]):
        path = vmx(tmp, {"firmware": "efi", "pciPassthru0.id": bad},
                   name=f"bad{i}.vmx")
        refused(t, path, at(path, "pciPassthru0.id") + "not a PCI address: "
                "BB:SS.F in hex (\"03:00.0\") or SSSSS:BBB:SS.F in decimal "
                "(\"00000:013:00.0\")")


@test
def decimal_and_hex_ids(tmp):
    """ESXi's decimal ids (00000:013:00.0 is bus 0x0d) and the hex forms
    with a domain give the host device"""
    dev0 = ("0000:0d:00.0",) + DEV0[1:]
    t = host(tmp, devices=(dev0, DEV1))
    path = vmx(tmp, {"firmware": "efi", "pciPassthru0.id": "00000:013:00.0",
                     "pciPassthru1.id": "0000:02:00.0"})
    dom, err = convert(tmp, t, path)
    eq([h[:2] for h in hostdevs(dom)],
       [("ua-nvme0", "0000:0d:00.0"), ("ua-nvme1", DEV1[0])])


@test
def bad_vendor_device_slot(tmp):
    """a malformed vendorId, deviceId or pciSlotNumber is refused on its
    line"""
    t = host(tmp)
    for key, bad, why in [("pciPassthru0.vendorId", "12abc",
                           "not a PCI vendor id (4 hex digits)"),
                          ("pciPassthru1.deviceId", "xyz",
                           "not a PCI device id (4 hex digits)"),
                          ("pciPassthru1.pciSlotNumber", "-3",
                           "not a slot number")]:
        path = vmx(tmp, {"firmware": "efi", key: bad}, name="v.vmx")
        refused(t, path, at(path, key) + why)


@test
def missing_device(tmp):
    """a pciPassthruN whose device the host does not have: refused, with
    where to look"""
    t = host(tmp, devices=(DEV0,))
    path = vmx(tmp, {"firmware": "efi"})
    refused(t, path, at(path, "pciPassthru1.id") + "no PCI device "
            "0000:02:00.0 on this host (an ESX address: see where the device "
            "is with 'nvme-passthru-host list')")


@test
def missing_id(tmp):
    """a present pciPassthruN without an id is refused on its present
    line"""
    path = vmx(tmp, {"firmware": "efi"}, drop=("pciPassthru1.id",))
    refused(host(tmp), path, at(path, "pciPassthru1.present") +
            "pciPassthru1.id is not set: which host device?")


@test
def other_device_at_address(tmp):
    """the host has another device at the address (vendor/device ids
    differ): refused, nothing guessed"""
    t = host(tmp, devices=(DEV0, (DEV1[0], 0x144d, 0xa808)))
    path = vmx(tmp, {"firmware": "efi"})
    refused(t, path, at(path, "pciPassthru1.id") + "0000:02:00.0 on this "
            "host is 144d:a808, not the VM's 78cd:6543")


@test
def non_nvme_device(tmp):
    """a passthrough device that is not NVMe (a NIC): that entry refused
    with the reason, the rest written, exit status 3"""
    t = host(tmp, devices=(DEV0,))
    t.pci(DEV1[0], cls=0x020000, vendor=DEV1[1], device=DEV1[2],
          driver="ixgbe", group=7)
    path = vmx(tmp, {"firmware": "efi"})
    dom, err = convert(tmp, t, path, status=3)
    rules(dom)
    pt = passthru_ports(dom, 1)
    eq(hostdevs(dom), [("ua-nvme0", DEV0[0], pt["ua-pt1"], 0, 0)])
    has(err, at(path, "pciPassthru1.id", "refused") + "0000:02:00.0 is not "
        "an NVMe controller (class 02:00:00, not 01:08:02): passthrough hotplug "
        "takes NVMe controllers only; left out\n")
    has(err, "1 passthrough NVMe device, 0 spare passthrough ports; refused "
        "devices left out\n")


@test
def device_in_use(tmp):
    """an NVMe the host uses (mounted) is refused with the host module's
    reason"""
    t = host(tmp)
    t.mount("259:1", "/dev/nvme0n1", "/srv")
    path = vmx(tmp, {"firmware": "efi"})
    refused(t, path, at(path, "pciPassthru0.id") + "0000:03:00.0 is in use "
            "by the host: /dev/nvme0n1 is mounted on /srv")


@test
def no_iommu(tmp):
    """on a host without an IOMMU every device is refused"""
    t = Tree(os.path.join(tmp, "host"))
    for bdf, vendor, device in (DEV0, DEV1):
        t.pci(bdf, vendor=vendor, device=device)
    path = vmx(tmp, {"firmware": "efi"})
    err = refused(t, path, "0000:03:00.0 has no IOMMU group: the host runs "
                  "without an IOMMU")
    has(err, "2 errors: no domain written")


@test
def duplicate_device(tmp):
    """two entries naming one device, or one slot, are refused"""
    t = host(tmp)
    path = vmx(tmp, {"firmware": "efi", "pciPassthru1.id": "03:00.0"})
    refused(t, path, at(path, "pciPassthru1.id") + "0000:03:00.0 is "
            "pciPassthru0's device too")
    path = vmx(tmp, {"firmware": "efi", "pciPassthru1.pciSlotNumber": "160"},
               name="s.vmx")
    refused(t, path, at(path, "pciPassthru1.pciSlotNumber") +
            "pciPassthru0 has the same slot")


@test
def not_present_skipped(tmp):
    """pciPassthruN.present = "FALSE": skipped with a note, its device
    not even looked for"""
    t = host(tmp, devices=(DEV0,))
    path = vmx(tmp, {"firmware": "efi", "pciPassthru1.present": "FALSE"})
    dom, err = convert(tmp, t, path)
    eq([h[:2] for h in hostdevs(dom)], [("ua-nvme0", DEV0[0])])
    passthru_ports(dom, 1)
    has(err, at(path, "pciPassthru1.present", "note") + "pciPassthru1.*: "
        "skipped, as VMware does\n")
    eq("pciPassthru1.id" in err, False, "its keys are not listed")


@test
def slot_order(tmp):
    """the ports follow VMware's pciSlotNumber order (the guest's), not N"""
    path = vmx(tmp, {"firmware": "efi", "pciPassthru0.pciSlotNumber": "224",
                     "pciPassthru1.pciSlotNumber": "192"})
    dom, err = convert(tmp, host(tmp), path)
    eq(hostdevs(dom), [("ua-nvme1", DEV1[0], 4, 0, 0),
                       ("ua-nvme0", DEV0[0], 5, 0, 0)])


@test
def passthru_settings_listed(tmp):
    """msiEnabled = FALSE, virtualDev = "pci" and another host's systemId
    are listed; the defaults and this host's systemId are not"""
    sid = "48c4619b-6d58-18db-2a0e-000423d1e6f6"
    path = vmx(tmp, {"firmware": "efi", "pciPassthru0.msiEnabled": "FALSE",
                     "pciPassthru0.virtualDev": "pci",
                     "pciPassthru1.msiEnabled": "TRUE",
                     "pciPassthru1.virtualDev": "pcie"})
    dom, err = convert(tmp, host(tmp, uuid=sid.upper()), path)
    for key, why in [("pciPassthru0.msiEnabled", "VMware gave the device "
                      "INTx only"),
                     ("pciPassthru0.virtualDev", "VMware showed the device as "
                      "conventional PCI")]:
        has(err, at(path, key, "not carried over") + why)
    for key in ("pciPassthru1.msiEnabled", "pciPassthru1.virtualDev",
                "pciPassthru0.systemId", "pciPassthru1.systemId"):
        eq(key in err, False, f"{key} listed:\n{err}")
    eq(len(hostdevs(dom)), 2)


# ------------------------------------------------------------------
# Hotplug, CPUs, memory


@test
def hotplug_enabled(tmp):
    """fixedPassthruHotPlugEnabled = "TRUE": the devices' ports and two
    spare hot-pluggable passthrough ports; --spare-ports sets how many"""
    t = host(tmp)
    path = vmx(tmp, {"firmware": "efi", "fixedPassthruHotPlugEnabled":
                     "TRUE"})
    dom, err = convert(tmp, t, path)
    pt = passthru_ports(dom, 4)
    eq([h[2] for h in hostdevs(dom)], [pt["ua-pt1"], pt["ua-pt2"]])
    has(err, at(path, "fixedPassthruHotPlugEnabled", "note") +
        "passthrough hotplug: 2 ports for the VM's devices and 2 spare, all "
        "hot-pluggable\n")
    dom, err = convert(tmp, t, path, "--spare-ports", "5")
    passthru_ports(dom, 7)
    dom, err = convert(tmp, t, path, "--spare-ports", "32")
    passthru_ports(dom, 32)
    has(err, "warning: " + path + ": 30 spare passthrough ports: a VM has "
        "at most 32 passthrough NVMe devices")
    # the root ports' addresses: 8 functions a slot, from slot 2
    addrs = sorted((int(c.find("address").get("slot"), 16),
                    int(c.find("address").get("function"), 16))
                   for _, c in ports(dom).values())
    eq(addrs, [(2 + i // 8, i % 8) for i in range(35)])
    rc, out, err = run(t, path, "--spare-ports", "33")
    eq((rc, out), (2, ""))
    has(err, "--spare-ports wants 0 to 32, not '33'")


@test
def cpus_and_hotadd(tmp):
    """numvcpus and cpuid.coresPerSocket carry over; vcpu.hotadd and
    mem.hotadd are listed as conflicts with the rules"""
    path = vmx(tmp, {"firmware": "efi", "numvcpus": "8",
                     "cpuid.coresPerSocket": "4", "vcpu.hotadd": "TRUE",
                     "mem.hotadd": "TRUE"})
    dom, err = convert(tmp, host(tmp), path)
    rules(dom)
    eq(dom.find("vcpu").text, "8")
    eq(dom.find("cpu/topology").attrib, {"sockets": "2", "dies": "1",
                                         "cores": "4", "threads": "1"})
    has(err, at(path, "vcpu.hotadd", "not carried over") + "conflicts "
        "with the rule 'no CPU hotplug': the domain has a fixed 8 vCPUs")
    has(err, at(path, "mem.hotadd", "not carried over") + "conflicts with "
        "the rule 'no memory hotplug'")
    path = vmx(tmp, {"firmware": "efi", "numvcpus": "129"}, name="big.vmx")
    refused(host(tmp), path, at(path, "numvcpus") + "more than the 128 "
            "vCPUs a passthrough-hotplug VM may have")


@test
def memory(tmp):
    """memsize is required; a partial reservation is locked in full with a
    warning; sched.mem.pin = TRUE is a full one"""
    t = host(tmp)
    path = vmx(tmp, {"firmware": "efi"}, drop=("memsize",))
    refused(t, path, f"{PROG}: error: {path}: memsize is not set")
    path = vmx(tmp, {"firmware": "efi", "memsize": "lots"}, name="m.vmx")
    refused(t, path, at(path, "memsize") + "not a memory size in MB")
    path = vmx(tmp, {"firmware": "efi", "memsize": "4096",
                     "sched.mem.minsize": "1024"}, name="p.vmx")
    dom, err = convert(tmp, t, path)
    eq(dom.find("memory").text, "4096")
    eq(dom.find("memoryBacking/locked") is not None, True)
    has(err, at(path, "sched.mem.minsize", "warning") + "VMware reserves "
        "1024 of the VM's 4096 MB: the domain locks all of its memory, as passthrough needs")
    path = vmx(tmp, {"firmware": "efi", "memsize": "4096",
                     "sched.mem.pin": "TRUE"}, drop=("sched.mem.minsize",),
               name="q.vmx")
    dom, err = convert(tmp, t, path)
    eq("reserves" in err, False, err)


# ------------------------------------------------------------------
# The rest of the VM, the file, the options


@test
def nics_and_uuid(tmp):
    """NICs become e1000e on the ordinary ports with their MAC; the USB
    controller and a free port follow; uuid.bios is the domain's UUID"""
    path = vmx(tmp, {"firmware": "efi",
                     "uuid.bios": "56 4d 8a 6e 1d 1b 33 0c-9c 4b 8f 77 c3 0e "
                     "7f 6f"},
               add=['ethernet0.present = "TRUE"',
                    'ethernet0.virtualDev = "vmxnet3"',
                    'ethernet0.networkName = "VM Network"',
                    'ethernet0.addressType = "generated"',
                    'ethernet0.generatedAddress = "00:0c:29:aa:bb:cc"',
                    'ethernet1.present = "TRUE"',
                    'ethernet1.virtualDev = "e1000e"',
                    'ethernet1.addressType = "static"',
                    'ethernet1.address = "00:50:56:00:00:01"',
                    'ethernet2.present = "FALSE"'])
    dom, err = convert(tmp, host(tmp), path, "--network", "lan")
    eq(dom.find("uuid").text, "564d8a6e-1d1b-330c-9c4b-8f77c30e7f6f")
    nics = [(i.find("mac").get("address"), i.find("source").get("network"),
             i.find("model").get("type"), i.find("address").get("bus"))
            for i in dom.findall("devices/interface")]
    eq(nics, [("00:0c:29:aa:bb:cc", "lan", "e1000e", "0x01"),
              ("00:50:56:00:00:01", "lan", "e1000e", "0x02")])
    eq(dom.find("devices/controller[@type='usb']/address").get("bus"),
       "0x03")
    p = ports(dom)
    eq([p[i][0] for i in sorted(p)], [None] * 4 + ["ua-pt1", "ua-pt2"],
       "four ordinary ports (2 NICs, USB, one free), then passthrough")
    eq([h[2] for h in hostdevs(dom)], [5, 6])
    has(err, at(path, "ethernet0.virtualDev", "warning") + "the NIC is an "
        "e1000e")
    has(err, at(path, "ethernet0.networkName", "not carried over") +
        "a VMware port group: the NIC is on libvirt's network 'lan'")


@test
def malformed_lines(tmp):
    """lines that are not KEY = "VALUE" are refused with their line"""
    t = host(tmp)
    path = vmx(tmp, {"firmware": "efi"}, add=["memsize = 512",
                                              "just some text",
                                              'numvcpus = "2" trailing',
                                              'guestOS = "li\x1bnux"'])
    n = len(sample_lines()) + 2
    err = refused(t, path, f"{PROG}: error: {path}:{n}: memsize: the value "
                  "must be in double quotes, found '512'")
    has(err, f"{path}:{n + 1}: not a VMX line: expected KEY = \"VALUE\", "
        "found 'just some text'")
    has(err, f"{path}:{n + 2}: numvcpus: text after the closing quote: "
        "'trailing'")
    has(err, f"{path}:{n + 3}: a control character (0x1b): not a text "
        "line")
    has(err, "4 errors: no domain written")


@test
def escapes_and_case(tmp):
    """|22 escapes are decoded (and escaped again in the XML); keys are
    case-insensitive; the last of a key set twice counts"""
    path = vmx(tmp, {"FIRMWARE": "efi", "displayName": "db |22prod|22 & co",
                     "MemSize": "1024"})
    dom, err = convert(tmp, host(tmp), path)
    eq(dom.find("name").text, 'db "prod" & co')
    eq(dom.find("memory").text, "1024")
    path = vmx(tmp, {"firmware": "efi"}, add=['memsize = "2048"'],
               name="twice.vmx")
    dom, err = convert(tmp, host(tmp), path)
    eq(dom.find("memory").text, "2048")


@test
def files_and_output(tmp):
    """a missing file fails with status 1; -o writes the domain, and a
    refusal writes no file"""
    t = host(tmp)
    rc, out, err = run(t, os.path.join(tmp, "none.vmx"))
    eq((rc, out), (1, ""))
    has(err, f"{PROG}: cannot read {tmp}/none.vmx: No such file or "
        "directory")
    path = vmx(tmp, {"firmware": "efi"})
    dest = os.path.join(tmp, "out.xml")
    rc, out, err = run(t, path, "-o", dest)
    eq((rc, out), (0, ""))
    with open(dest) as f:
        text = f.read()
    validate(tmp, text)
    eq(text.endswith("</domain>\n"), True)
    os.unlink(dest)
    rc, out, err = run(t, SAMPLE, "-o", dest)
    eq((rc, os.path.exists(dest)), (2, False))
    rc, out, err = run(t, path, "--root", os.path.join(tmp, "nowhere"))
    eq(rc, 2)
    has(err, "--root")


@test
def domain_type(tmp):
    """--type qemu writes a TCG domain (type='qemu'), the rest unchanged;
    kvm is the default; another type is refused"""
    t = host(tmp)
    path = vmx(tmp, {"firmware": "efi"})
    kvm, _ = convert(tmp, t, path)
    dom, err = convert(tmp, t, path, "--type", "qemu")
    eq(dom.get("type"), "qemu")
    dom.set("type", "kvm")
    eq(ET.tostring(dom), ET.tostring(kvm), "the rest of the domain")
    rc, out, err = run(t, path, "--type", "xen")
    eq((rc, out), (2, ""))
    has(err, f"{PROG}: --type wants kvm or qemu, not 'xen'")


@test
def relative_disk_paths(tmp):
    """a disk's relative fileName is taken beside the .vmx; a CD-ROM of
    the ESX host's drive is an empty drive"""
    path = vmx(tmp, {"firmware": "efi", "scsi0:0.fileName": "disk.vmdk",
                     "ide0:0.deviceType": "atapi-cdrom"})
    dom, err = convert(tmp, host(tmp), path)
    disks = dom.findall("devices/disk")
    eq(disks[0].find("source").get("file"),
       os.path.join(os.path.realpath(tmp), "disk.vmdk"))
    eq((disks[1].get("device"), disks[1].find("source")), ("cdrom", None))
    has(err, at(path, "ide0:0.deviceType", "not carried over") + "not an "
        "image connected at power on: an empty CD-ROM drive")


if __name__ == "__main__":
    sys.exit(tap.main(TOOL, "vmx-", "tools"))
