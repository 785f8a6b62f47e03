# SPDX-License-Identifier: GPL-2.0-or-later
"""The sample VMX of VMware's ESX 4 VMDirectPath note
(esx4-vmdirectpath.vmx), variations of it, and a synthetic host
(tests/host/faketree.py) that has its two devices: for the converter's
tests (vmx-import-test.py) and for its domain under a real libvirtd
(tests/guest/vmx-import-libvirt-test.py)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                "tests", "host"))
from faketree import Tree  # noqa: E402

SAMPLE = os.path.join(HERE, "esx4-vmdirectpath.vmx")
# The sample's devices: pciPassthru0 and pciPassthru1
DEV0 = ("0000:03:00.0", 0x12ab, 0x3456)
DEV1 = ("0000:02:00.0", 0x78cd, 0x6543)
NVME = 0x010802


def host(tmp, devices=(DEV0, DEV1), cls=NVME, uuid=None):
    """A host with the IOMMU on and the sample's devices, each a free
    NVMe (class CLS) alone in its IOMMU group"""
    t = Tree(os.path.join(tmp, "host"))
    t.iommu_on()
    for group, (bdf, vendor, device) in enumerate(devices, 1):
        t.pci(bdf, cls=cls, vendor=vendor, device=device, group=group)
        if cls == NVME:
            c = t.controller(bdf)
            t.namespace(c, "nvme0n1", f"259:{group}")
    if uuid:
        t.write("sys/class/dmi/id/product_uuid", uuid + "\n")
    return t


def sample_lines():
    with open(SAMPLE) as f:
        return f.read().splitlines()


def vmx(tmp, set_=None, drop=(), add=(), name="vm.vmx"):
    """The sample, with keys in SET_ given new values (in place), keys in
    DROP removed, lines ADD appended.  Its path."""
    set_ = dict(set_ or {})
    out = []
    for line in sample_lines():
        key = line.split("=")[0].strip()
        if key in drop:
            continue
        if key in set_:
            line = f'{key} = "{set_.pop(key)}"'
        out.append(line)
    out += [f'{k} = "{v}"' for k, v in set_.items()] + list(add)
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path
