# SPDX-License-Identifier: GPL-2.0-or-later
"""A synthetic host for nvme-passthru-host --root: sys/, dev/, proc/, run/
and etc/ laid out as Linux shows them, and a stand-in for the kernel.

The kernel's part: sys/bus/pci/drivers_probe is a fifo that FakeKernel
reads.  For each address written to it, it does what the PCI core does
on a probe: bind the device to the driver its driver_override names (or
to nvme when there is none), moving the driver link, the nvme
controller folder (only while nvme has the device) and /dev/vfio/N.
A tree without a FakeKernel has a plain file there: writes land, and
nothing rebinds, like a kernel that refuses the device.
"""

import os
import threading


class Tree:
    def __init__(self, root):
        self.root = root
        for d in ("sys/bus/pci/devices", "sys/bus/pci/drivers/nvme",
                  "sys/bus/pci/slots", "sys/kernel/iommu_groups",
                  "sys/block", "sys/class/iommu", "sys/module",
                  "sys/firmware/acpi/tables", "dev/vfio", "proc/self",
                  "run", "etc"):
            os.makedirs(self.p(d), exist_ok=True)
        self.write("proc/self/mountinfo", "")
        self.write("proc/swaps",
                   "Filename\tType\tSize\tUsed\tPriority\n")
        self.write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=UUID=1 ro\n")
        self.write("proc/interrupts", "")
        self.write("sys/bus/pci/drivers_probe", "")
        self.driver("nvme")

    def p(self, rel):
        return os.path.join(self.root, rel)

    def write(self, rel, text):
        os.makedirs(os.path.dirname(self.p(rel)), exist_ok=True)
        with open(self.p(rel), "w") as f:
            f.write(text)

    def read(self, rel):
        with open(self.p(rel)) as f:
            return f.read()

    def exists(self, rel):
        return os.path.lexists(self.p(rel))

    def link(self, rel, target):
        os.makedirs(os.path.dirname(self.p(rel)), exist_ok=True)
        if os.path.lexists(self.p(rel)):
            os.unlink(self.p(rel))
        os.symlink(target, self.p(rel))

    def driver(self, name):
        for f in ("bind", "unbind"):
            if not self.exists(f"sys/bus/pci/drivers/{name}/{f}"):
                self.write(f"sys/bus/pci/drivers/{name}/{f}", "")

    # -- the IOMMU and VFIO, as on a host that can pass devices through
    def iommu_on(self, kind="DMAR", intremap=True, vfio=True):
        self.write(f"sys/firmware/acpi/tables/{kind}", "")
        os.makedirs(self.p("sys/class/iommu/dmar0"), exist_ok=True)
        if intremap:
            self.write("proc/interrupts",
                       "           CPU0\n 24:  0  IR-PCI-MSI 524288-edge"
                       "  nvme0q0\n")
        if vfio:
            self.vfio_loaded()

    def vfio_loaded(self):
        for m in ("vfio", "vfio_pci", "vfio_iommu_type1"):
            os.makedirs(self.p(f"sys/module/{m}"), exist_ok=True)
        self.driver("vfio-pci")
        self.write("dev/vfio/vfio", "")

    # -- PCI devices
    def pci(self, bdf, cls=0x010802, vendor=0x144d, device=0xa808,
            driver="nvme", group=None, slot=None):
        d = f"sys/bus/pci/devices/{bdf}"
        self.write(f"{d}/class", f"0x{cls:06x}\n")
        self.write(f"{d}/vendor", f"0x{vendor:04x}\n")
        self.write(f"{d}/device", f"0x{device:04x}\n")
        self.write(f"{d}/driver_override", "")
        if driver:
            self.driver(driver)
            self.link(f"{d}/driver", f"../../drivers/{driver}")
        if group is not None:
            self.link(f"{d}/iommu_group",
                      f"../../../../kernel/iommu_groups/{group}")
            self.link(f"sys/kernel/iommu_groups/{group}/devices/{bdf}",
                      f"../../../../bus/pci/devices/{bdf}")
            if driver == "vfio-pci":
                self.write(f"dev/vfio/{group}", "")
        if slot is not None:
            # as the kernel writes it: dddd:bb:ss, no function
            self.write(f"sys/bus/pci/slots/{slot}/address", bdf[:10] + "\n")
        return d

    def bind(self, bdf, drv):
        """What the kernel shows once BDF is bound to the driver DRV"""
        d = f"sys/bus/pci/devices/{bdf}"
        group = os.path.basename(os.readlink(self.p(f"{d}/iommu_group")))
        # the nvme driver's controller exists only while nvme has it
        if drv == "nvme" and self.exists(f"{d}/.nvme-unbound"):
            os.rename(self.p(f"{d}/.nvme-unbound"), self.p(f"{d}/nvme"))
        if drv != "nvme" and self.exists(f"{d}/nvme"):
            os.rename(self.p(f"{d}/nvme"), self.p(f"{d}/.nvme-unbound"))
        if drv == "vfio-pci":
            self.write(f"dev/vfio/{group}", "")
        elif self.exists(f"dev/vfio/{group}"):
            os.unlink(self.p(f"dev/vfio/{group}"))
        # the driver link last: it is what the command waits for
        self.link(f"{d}/driver", f"../../drivers/{drv}")

    def controller(self, bdf, ctrl="nvme0", model="Samsung SSD 970 EVO Plus "
                   "1TB", serial="S4EWNX0R123456", fw="2B2QEXM7",
                   devnum="240:0"):
        c = f"sys/bus/pci/devices/{bdf}/nvme/{ctrl}"
        # sysfs pads model and serial with blanks
        self.write(f"{c}/model", model + "    \n")
        self.write(f"{c}/serial", serial + "  \n")
        self.write(f"{c}/firmware_rev", fw + "\n")
        self.write(f"{c}/dev", devnum + "\n")
        return c

    def nvme(self, bdf, group=1, namespaces=1):
        """An NVMe bound to nvme, alone in IOMMU group GROUP (None: no
        IOMMU), controller nvme0 with NAMESPACES namespaces nvme0nN
        (259:N-1), none of them used: what passthrough wants.  The
        namespaces' folders."""
        self.pci(bdf, group=group)
        c = self.controller(bdf)
        return [self.namespace(c, f"nvme0n{n + 1}", f"259:{n}")
                for n in range(namespaces)]

    def block(self, folder, devnum):
        """A block device's sysfs folder (a namespace or a head)"""
        self.write(f"{folder}/dev", devnum + "\n")
        os.makedirs(self.p(f"{folder}/holders"), exist_ok=True)
        return folder

    def partition(self, disk, name, devnum):
        part = f"{disk}/{name}"
        self.block(part, devnum)
        self.write(f"{part}/partition", "1\n")
        return part

    def namespace(self, ctrl_folder, name="nvme0n1", devnum="259:0"):
        return self.block(f"{ctrl_folder}/{name}", devnum)

    def multipath_namespace(self, ctrl_folder, path="nvme0c0n1",
                            head="nvme0n1", subsys="nvme-subsys0",
                            devnum="259:0", block_link=True):
        """Native multipath: the controller has the path, the subsystem
        the head (the disk); /sys/block links to the head."""
        os.makedirs(self.p(f"{ctrl_folder}/{path}"), exist_ok=True)
        h = f"sys/devices/virtual/nvme-subsystem/{subsys}/{head}"
        self.block(h, devnum)
        if block_link:
            self.link(f"sys/block/{head}",
                      f"../devices/virtual/nvme-subsystem/{subsys}/{head}")
        return h

    def holder(self, folder, name="dm-0", devnum="254:0", dm_name=None,
               dm_uuid=None, md_level=None):
        self.link(f"{folder}/holders/{name}", f"../../../../block/{name}")
        h = self.block(f"sys/block/{name}", devnum)
        if dm_name:
            self.write(f"{h}/dm/name", dm_name + "\n")
            self.write(f"{h}/dm/uuid", (dm_uuid or "") + "\n")
        if md_level:
            self.write(f"{h}/md/level", md_level + "\n")
        return h

    # -- what the host does with its disks
    def mount(self, devnum, source, point, fstype="ext4"):
        with open(self.p("proc/self/mountinfo"), "a") as f:
            n = sum(1 for _ in open(self.p("proc/self/mountinfo"))) + 20
            f.write(f"{n} 1 {devnum} / {point} rw,relatime shared:1 - "
                    f"{fstype} {source} rw\n")

    def swap(self, path):
        with open(self.p("proc/swaps"), "a") as f:
            f.write(f"{path}\tpartition\t1048572\t0\t-2\n")

    def process(self, pid, comm, fds=(), limits_memlock="unlimited",
                cap_eff="0000000000000000", uid=0, cmdline=()):
        d = f"proc/{pid}"
        self.write(f"{d}/comm", comm + "\n")
        self.write(f"{d}/status", f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t"
                   f"{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
                   f"CapEff:\t{cap_eff}\n")
        self.write(f"{d}/limits",
                   "Limit                     Soft Limit           Hard "
                   "Limit           Units     \n"
                   f"Max locked memory         {limits_memlock:<20} "
                   f"{limits_memlock:<20} bytes     \n")
        self.write(f"{d}/cmdline", "".join(a + "\0" for a in cmdline))
        os.makedirs(self.p(f"{d}/fd"), exist_ok=True)
        for i, target in enumerate(fds):
            self.link(f"{d}/fd/{i + 3}", target)


class FakeKernel:
    """Reads the drivers_probe fifo and rebinds as the PCI core would.

    mode "bind": bind as driver_override says; "vanish": the device is
    removed (surprise) when it is probed."""

    def __init__(self, tree, mode="bind"):
        self.tree = tree
        self.mode = mode
        self.probed = []
        probe = tree.p("sys/bus/pci/drivers_probe")
        os.unlink(probe)
        os.mkfifo(probe)
        self.fifo = probe
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            with open(self.fifo) as f:
                data = f.read()
            if data == "STOP":
                return
            for bdf in data.split():
                self.probed.append(bdf)
                self.probe(bdf)

    def probe(self, bdf):
        t = self.tree
        d = f"sys/bus/pci/devices/{bdf}"
        if self.mode == "vanish":
            os.system(f"rm -rf {t.p(d)}")
            return
        override = t.read(f"{d}/driver_override").strip()
        t.bind(bdf, override or "nvme")

    def stop(self):
        with open(self.fifo, "w") as f:
            f.write("STOP")
        self.thread.join(5)
