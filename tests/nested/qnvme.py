# SPDX-License-Identifier: GPL-2.0-or-later
"""qtest plays the guest of L2: PCI enumeration behind a port, ACPI
hotplug, and a minimal polled NVMe driver (a port of
tests/qtest/nvme-passthru/nvme-driver.c and harness.c to the qtest
protocol of bed.QTest)."""

import struct
import time

# ACPI PCI hotplug registers of q35 (hw/acpi/pcihp.c)
ACPI_PCIHP = 0x0cc0
PCI_DOWN, PCI_EJ, PCI_SEL = 0x4, 0x8, 0x10

BAR_BASE = 0xE0000000           # the PC's PCI hole, as libqos uses it
RAM = 16 << 20                  # queues and buffers in L2's RAM
QSIZE = 8
LBA = 512


class NvmeError(Exception):
    pass


def port_devfn(n):
    return (3 + n) << 3         # rp N at 00:(3+N).0 (bed.l2_args)


def number_bus(qt, n):
    """What firmware would do: rp N's secondary bus is N."""
    d = port_devfn(n)
    qt.cfg_write(0, d, 0x18, 0, 1)
    qt.cfg_write(0, d, 0x19, n, 1)
    qt.cfg_write(0, d, 0x1a, n, 1)


def device_present(qt, n):
    return qt.cfg_read(n, 0, 0, 2) != 0xffff


def port_id(n, port=None):
    """The id of port N: PORT if given (a libvirt alias such as ua-pt1),
    else rp N (bed.l2_args)."""
    return port or "rp%d" % n


def bsel(qmp, n, port=None):
    p = port_id(n, port)
    return qmp.cmd("qom-get", path="/machine/peripheral/%s/%s" % (p, p),
                   property="acpi-pcihp-bsel")


def acpi_down(qt, qmp, n, port=None):
    """ACPI asks the guest to eject slot 0 of port N's bus."""
    qt.outl(ACPI_PCIHP + PCI_SEL, bsel(qmp, n, port))
    return qt.inl(ACPI_PCIHP + PCI_DOWN) & 1


def acpi_eject(qt, qmp, n, port=None):
    """The guest agrees to the removal (_EJ0)."""
    qt.outl(ACPI_PCIHP + PCI_SEL, bsel(qmp, n, port))
    qt.outl(ACPI_PCIHP + PCI_EJ, 1)


def port_state(qmp, n, port=None):
    """Port N's entry in query-passthru-hotplug."""
    p = port_id(n, port)
    for x in qmp.cmd("query-passthru-hotplug")["ports"]:
        if x["id"] == p:
            return x
    raise NvmeError("no port %s in query-passthru-hotplug" % p)


def ack_surprise(qt, qmp, n, port=None, timeout=30):
    """The guest saw port N's slot emptied under it: it ejects (ACPI
    _EJ0), and the port becomes empty."""
    if device_present(qt, n):
        raise NvmeError("the device still answers config reads after its "
                        "removal")
    if acpi_down(qt, qmp, n, port) != 1:
        raise NvmeError("ACPI did not ask for the eject")
    acpi_eject(qt, qmp, n, port)
    end = time.monotonic() + timeout
    while port_state(qmp, n, port)["state"] != "empty":
        if time.monotonic() > end:
            raise NvmeError("port %s not empty %d s after the eject: %s"
                            % (port_id(n, port), timeout,
                               port_state(qmp, n, port)))
        time.sleep(0.2)


def guest_enable(qt, n):
    """The guest driver takes the device on rp N into use (ACPI mode):
    class check, memory + bus master, MSI-X on.  Returns the class."""
    cls = qt.cfg_read(n, 0, 0x08) >> 8
    qt.cfg_write(n, 0, 0x04, 0x6, 2)
    msix = qt.find_cap(n, 0, 0x11)
    if not msix:
        raise NvmeError("no MSI-X capability")
    flags = qt.cfg_read(n, 0, msix + 2, 2)
    qt.cfg_write(n, 0, msix + 2, flags | 0x8000, 2)
    return cls


def hot_add(qmp, qt, host, n=1, dev="nvme0", driver="vfio-nvme"):
    """device_add DRIVER (host=HOST) on rp N: the port is adding until the
    guest enables the device, then the add completes.  Returns (class,
    seconds device_add took, the port while adding)."""
    m = qmp.mark()
    t0 = time.monotonic()
    qmp.cmd("device_add", driver=driver, id=dev, bus=port_id(n), host=host)
    t_reply = time.monotonic() - t0
    qmp.wait_hotplug(dev, "add", ("started",), 30, m)
    state = port_state(qmp, n)
    if state["state"] != "adding":
        raise NvmeError("port rp%d while adding: %s" % (n, state))
    done = [e for _, e in qmp.events[m:] if e["event"] == "PASSTHRU_HOTPLUG"
            and e["data"].get("phase") == "completed"]
    if done:
        raise NvmeError("the add completed before the guest enabled the "
                        "device: %s" % done)
    cls = guest_enable(qt, n)
    _, ev, _ = qmp.wait_hotplug(dev, "add", timeout=30, since=m)
    if ev["data"]["phase"] != "completed":
        raise NvmeError("add: %s" % ev["data"])
    return cls, t_reply, state


def remove_orderly(qmp, qt, dev, n, timeout=30):
    """device_del DEV on rp N, the guest ejects (ACPI), DEVICE_DELETED;
    the port is empty again."""
    m = qmp.mark()
    qmp.cmd("device_del", id=dev)
    qmp.wait_hotplug(dev, "remove", ("started",), timeout, m)
    if acpi_down(qt, qmp, n) != 1:
        raise NvmeError("ACPI did not ask for the eject")
    acpi_eject(qt, qmp, n)
    _, ev, _ = qmp.wait_hotplug(dev, "remove", timeout=timeout, since=m)
    if ev["data"]["phase"] != "completed":
        raise NvmeError("remove: %s" % ev["data"])
    qmp.wait_event(lambda e: e["event"] == "DEVICE_DELETED"
                   and e.get("data", {}).get("device") == dev, timeout, m,
                   "DEVICE_DELETED %s" % dev)
    if port_state(qmp, n)["state"] != "empty":
        raise NvmeError("rp%d after the removal: %s" % (n, port_state(qmp, n)))


class Nvme:
    """Polled NVMe driver on the device behind rp N, through BAR 0."""

    def __init__(self, qt, n, timeout=30):
        self.qt, self.n, self.timeout = qt, n, timeout
        self.cid = 0

    def map_bar0(self):
        qt, n = self.qt, self.n
        qt.cfg_write(n, 0, 0x10, 0xffffffff)
        lo = qt.cfg_read(n, 0, 0x10)
        if lo & 1:
            raise NvmeError("BAR 0 is an I/O BAR")
        size = (~(lo & ~0xf) & 0xffffffff) + 1
        qt.cfg_write(n, 0, 0x10, BAR_BASE)
        if lo & 0x4:
            qt.cfg_write(n, 0, 0x14, 0)
        self.bar, self.bar_size = BAR_BASE, size
        # the port forwards the window, and the device's DMA
        d = port_devfn(n)
        base = BAR_BASE & ~0xfffff
        limit = (BAR_BASE + size - 1) | 0xfffff
        qt.cfg_write(0, d, 0x20, base >> 16, 2)
        qt.cfg_write(0, d, 0x22, limit >> 16, 2)
        qt.cfg_write(0, d, 0x04, qt.cfg_read(0, d, 0x04, 2) | 0x6, 2)
        qt.cfg_write(n, 0, 0x04, qt.cfg_read(n, 0, 0x04, 2) | 0x6, 2)
        return size

    def rd(self, off):
        return self.qt.readl(self.bar + off)

    def wr(self, off, v):
        self.qt.writel(self.bar + off, v)

    def _wait(self, pred, what):
        end = time.monotonic() + self.timeout
        while not pred():
            if time.monotonic() > end:
                raise NvmeError("timeout waiting for %s" % what)
            time.sleep(0.01)

    def _queue(self, qid, ram):
        q = {"id": qid, "sq": ram, "cq": ram + 4096, "tail": 0, "head": 0,
             "phase": 1}
        self.qt.memset(q["cq"], QSIZE * 16, 0)
        return q

    def start(self):
        self.map_bar0()
        self.cap = self.rd(0) | self.rd(4) << 32
        self.wr(0x14, 0)
        self._wait(lambda: self.rd(0x1c) & 1 == 0, "CSTS.RDY=0")
        self.admin = self._queue(0, RAM)
        self.wr(0x24, (QSIZE - 1) << 16 | (QSIZE - 1))
        for off, v in ((0x28, self.admin["sq"]), (0x30, self.admin["cq"])):
            self.wr(off, v & 0xffffffff)
            self.wr(off + 4, v >> 32)
        self.wr(0x14, 1 | 6 << 16 | 4 << 20)
        self._wait(lambda: self.rd(0x1c) & 1 == 1, "CSTS.RDY=1")
        self.io = self._queue(1, RAM + 8192)
        self.command(self.admin, 0x05, prp1=self.io["cq"],
                     cdw10=(QSIZE - 1) << 16 | 1, cdw11=1)
        self.command(self.admin, 0x01, prp1=self.io["sq"],
                     cdw10=(QSIZE - 1) << 16 | 1, cdw11=1 << 16 | 1)
        self.buf = RAM + 16384
        return self

    def submit(self, q, opcode, nsid=0, prp1=0, cdw10=0, cdw11=0, cdw12=0):
        self.cid = (self.cid + 1) & 0xffff
        cmd = struct.pack("<BBHIQQQQIIIIII", opcode, 0, self.cid, nsid, 0, 0,
                          prp1, 0, cdw10, cdw11, cdw12, 0, 0, 0)
        self.qt.memwrite(q["sq"] + q["tail"] * 64, cmd)
        q["tail"] = (q["tail"] + 1) % QSIZE
        self.wr(0x1000 + 8 * q["id"], q["tail"])

    def complete(self, q):
        addr = q["cq"] + q["head"] * 16
        end = time.monotonic() + self.timeout
        while True:
            cqe = self.qt.memread(addr, 16)
            status = struct.unpack_from("<H", cqe, 14)[0]
            if status & 1 == q["phase"]:
                break
            if time.monotonic() > end:
                raise NvmeError("no completion on queue %d" % q["id"])
            time.sleep(0.01)
        q["head"] = (q["head"] + 1) % QSIZE
        if q["head"] == 0:
            q["phase"] ^= 1
        self.wr(0x1000 + 8 * q["id"] + 4, q["head"])
        return status >> 1

    def command(self, q, opcode, **kw):
        self.submit(q, opcode, **kw)
        st = self.complete(q)
        if st:
            raise NvmeError("opcode 0x%02x on queue %d: status 0x%x"
                            % (opcode, q["id"], st))

    def identify(self):
        """Identify Controller: (serial, model)."""
        self.qt.memset(self.buf, 4096, 0)
        self.command(self.admin, 0x06, prp1=self.buf, cdw10=1)
        data = self.qt.memread(self.buf, 4096)
        return (data[4:24].decode(errors="replace").strip(),
                data[24:64].decode(errors="replace").strip())

    def write(self, lba, byte, count=1):
        self.qt.memset(self.buf, count * LBA, byte)
        self.command(self.io, 0x01, nsid=1, prp1=self.buf, cdw10=lba,
                     cdw12=count - 1)

    def read(self, lba, count=1):
        self.qt.memset(self.buf, count * LBA, 0xee)
        self.command(self.io, 0x02, nsid=1, prp1=self.buf, cdw10=lba,
                     cdw12=count - 1)
        return self.qt.memread(self.buf, count * LBA)

    def flush(self):
        self.command(self.io, 0x00, nsid=1)
