# SPDX-License-Identifier: GPL-2.0-or-later
"""The nested kernel-VFIO test bed: a real IOMMU, a real vfio-pci.

    host  (this process)
     L0   the fork's qemu-system-x86_64, TCG, q35 + intel-iommu
          (intremap=on, caching-mode=on), hotplug-capable pcie-root-ports
          rp1..rp5 at 00:10.0..00:14.0: emulated NVMe controllers on rp1
          and rp2 (image files), an e1000e on rp3 (the non-NVMe device),
          rp4 empty (for a device_add in L0), and on rp5 a two-function
          device that shares one IOMMU group: an e1000e at 0.0
          (multifunction=on) and an NVMe (serial bed5) at 0.1;
          Bed(spare_ports=N): N more empty ports, rp6.. at 00:15.0..
     L1   Debian's kernel (intel_iommu=on iommu=pt), one vCPU, vfio-pci,
          the fork's QEMU; its agent (tests/nested/l1-init) on ttyS1
     L2   the fork's QEMU in qtest mode, started by L1 against a real
          /dev/vfio/N; its QMP on L1's ttyS2, its qtest on ttyS3, which L0
          forwards to unix sockets here

    bed = Bed("name").start()           # build (cached), boot L0 + L1
    bdf = bed.bind(bed.slot_bdf(1), "vfio-pci")
    l2 = bed.start_l2(ports=2)          # L2.qmp (harness.Qmp), L2.qt (QTest)
    ...
    l2.stop(); bed.stop()

Why the fork's QEMU as L0 and not Debian's: it is always there (the
build makes it; scripts/install-deps.sh installs no qemu-system-x86),
it is the pinned upstream 10.2.2 the research measured, and bookworm's
7.2 would be one more variable.  L0 never runs project code paths: it
only emulates the hardware.

Every missing piece raises BedError (tests report it as a failure, never
a skip).  Python 3 standard library only.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "guest"))
sys.dont_write_bytecode = True
import harness as h  # noqa: E402

TOP = h.TOP
BUILD = h.BUILD
NESTED = os.path.join(BUILD, "nested")
OVMF_L1 = "/usr/share/OVMF/OVMF_CODE_4M.fd"     # path inside L1 too

# L0's root ports: (slot in L1's bus 0, what sits there)
SLOTS = {1: "10", 2: "11", 3: "12", 4: "13", 5: "14"}


class BedError(h.HarnessError):
    pass


def build():
    """Run scripts/nested/build-bed.sh; return its output lines."""
    p = subprocess.run([os.path.join(TOP, "scripts", "nested", "build-bed.sh")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if p.returncode != 0:
        raise BedError("build-bed.sh failed: %s" % p.stdout.strip()[-500:])
    return p.stdout.splitlines()


# --------------------------------------------------------------------------
# a byte stream carried over a serial line of L1 (QMP or qtest of L2)


class Line:
    """Connection to one of L0's serial chardev sockets."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        h.wait_for(lambda: h.try_connect(self.sock, path), timeout,
                   "socket %s" % path)
        self.buf = b""
        self.cond = threading.Condition()
        self.closed = False
        self.gen = 0            # readers of an older L2 stop reading
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.buf += chunk
                self.cond.notify_all()

    def drain(self):
        """Forget what is buffered, and retire every reader: a new L2."""
        with self.cond:
            self.buf = b""
            self.gen += 1
            self.cond.notify_all()
            return self.gen

    def readline(self, timeout, gen=None):
        end = h.now() + timeout
        with self.cond:
            while b"\n" not in self.buf:
                left = end - h.now()
                if left <= 0 or self.closed or (gen is not None
                                                 and gen != self.gen):
                    return None
                self.cond.wait(left)
            raw, self.buf = self.buf.split(b"\n", 1)
            return raw.decode(errors="replace").strip("\r\0 ")

    def write(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class LineQmp(h.Qmp):
    """harness.Qmp over a Line: the greeting comes when L2 starts."""

    def __init__(self, line, timeout=60, log=None):
        self.line = line
        self.sock = line.sock
        self._init_state(log)
        self.gen = line.gen
        end = h.now() + timeout
        while True:
            raw = line.readline(max(0.1, end - h.now()), self.gen)
            if raw is None:
                raise BedError("no QMP greeting from L2 within %d s" % timeout)
            try:
                if "QMP" in json.loads(raw):
                    break
            except ValueError:
                pass        # noise of the line before L2 opened it
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        self.cmd("qmp_capabilities")

    def _reader(self):
        while True:
            raw = self.line.readline(3600, self.gen)
            if raw is None:
                if self.line.closed or self.line.gen != self.gen:
                    break
                continue
            try:
                self._dispatch(raw)
            except ValueError:
                continue
        self._reader_done()


class QTest:
    """The qtest protocol of L2 (readl, writel, outl, memread, ...)."""

    def __init__(self, line, log=None):
        self.line = line
        self.log = log
        self.lock = threading.Lock()

    def cmd(self, text, timeout=30):
        with self.lock:
            self.line.write((text + "\n").encode())
            while True:
                r = self.line.readline(timeout)
                if r is None:
                    raise BedError("qtest: no answer to '%s'" % text[:60])
                if self.log:
                    self.log.write("%s -> %s\n" % (text[:80], r[:80]))
                if r.startswith("IRQ"):
                    continue
                if r.startswith("OK"):
                    return r[2:].strip()
                if r.startswith("FAIL") or r.startswith("ERR"):
                    raise BedError("qtest: '%s' failed: %s" % (text[:60], r))
                # anything else is noise from before L2 took the line

    def sync(self):
        """Wait until L2 answers on the line (it has just started)."""
        h.wait_for(lambda: self._try("inb 0x80"), 60, "qtest answer", step=0.5)

    def _try(self, text):
        try:
            self.cmd(text, timeout=2)
            return True
        except BedError:
            return False

    def _num(self, text):
        return int(self.cmd(text), 16)

    def readb(self, a): return self._num("readb 0x%x" % a)
    def readw(self, a): return self._num("readw 0x%x" % a)
    def readl(self, a): return self._num("readl 0x%x" % a)
    def readq(self, a): return self._num("readq 0x%x" % a)
    def writeb(self, a, v): self.cmd("writeb 0x%x 0x%x" % (a, v))
    def writew(self, a, v): self.cmd("writew 0x%x 0x%x" % (a, v))
    def writel(self, a, v): self.cmd("writel 0x%x 0x%x" % (a, v))
    def writeq(self, a, v): self.cmd("writeq 0x%x 0x%x" % (a, v))
    def inb(self, p): return self._num("inb 0x%x" % p)
    def inw(self, p): return self._num("inw 0x%x" % p)
    def inl(self, p): return self._num("inl 0x%x" % p)
    def outb(self, p, v): self.cmd("outb 0x%x 0x%x" % (p, v))
    def outw(self, p, v): self.cmd("outw 0x%x 0x%x" % (p, v))
    def outl(self, p, v): self.cmd("outl 0x%x 0x%x" % (p, v))

    def memread(self, a, n):
        r = self.cmd("read 0x%x 0x%x" % (a, n))
        return bytes.fromhex(r[2:] if r.startswith("0x") else r)

    def memwrite(self, a, data):
        self.cmd("write 0x%x 0x%x 0x%s" % (a, len(data), data.hex()))

    def memset(self, a, n, v):
        self.cmd("memset 0x%x 0x%x 0x%02x" % (a, n, v))

    # PCI config space through 0xcf8/0xcfc (bus, devfn)
    def _cfg_addr(self, bus, devfn, off):
        self.outl(0xcf8, 0x80000000 | bus << 16 | devfn << 8 | (off & 0xfc))

    def cfg_read(self, bus, devfn, off, size=4):
        self._cfg_addr(bus, devfn, off)
        port = 0xcfc + (off & 3)
        return {1: self.inb, 2: self.inw, 4: self.inl}[size](port)

    def cfg_write(self, bus, devfn, off, val, size=4):
        self._cfg_addr(bus, devfn, off)
        port = 0xcfc + (off & 3)
        {1: self.outb, 2: self.outw, 4: self.outl}[size](port, val)

    def find_cap(self, bus, devfn, cap_id):
        pos = self.cfg_read(bus, devfn, 0x34, 1) & 0xfc
        while pos:
            if self.cfg_read(bus, devfn, pos, 1) == cap_id:
                return pos
            pos = self.cfg_read(bus, devfn, pos + 1, 1) & 0xfc
        return 0


def wait_deleted(qmp, dev, since, timeout=30):
    """Host time of QEMU's DEVICE_DELETED of DEV (QMP events from SINCE)."""
    return qmp.wait_event(
        lambda e: e["event"] == "DEVICE_DELETED"
        and e.get("data", {}).get("device") == dev, timeout, since,
        "DEVICE_DELETED %s" % dev)[0]


# --------------------------------------------------------------------------
# L2


class L2:
    """One L2 QEMU in qtest mode, started by L1's agent.  .qmp, .qt."""

    def __init__(self, bed, args, name):
        self.bed = bed
        self.args = args
        self.name = name
        self.qmp = None
        self.qt = None
        self.pid = None

    def start(self, timeout=90):
        bed = self.bed
        for line in (bed.qmp_line, bed.qt_line):
            line.drain()
        am = bed.agent.mark()
        _, text, _, _ = bed.agent.call("l2 " + " ".join(self.args), timeout=30)
        self.pid = text.partition("pid=")[2].strip()
        self.exit_mark = am
        try:
            self.qmp = LineQmp(bed.qmp_line, timeout,
                               log=open(bed.p("%s-qmp.log" % self.name), "w"))
        except BedError as e:
            raise BedError("%s; L2 log: %s" % (e, self.log_tail()))
        self.qt = QTest(bed.qt_line,
                        log=open(bed.p("%s-qtest.log" % self.name), "w"))
        self.qt.sync()
        return self

    def log_tail(self, n=8):
        try:
            return " | ".join(x[:200] for x in
                              self.bed.sh("tail -n %d /tmp/l2.log" % n))
        except h.HarnessError as e:
            return "(no log: %s)" % e

    def running(self):
        """L2 answers QMP and its VM is not stopped."""
        return self.qmp.cmd("query-status")["status"]

    def exited(self):
        for e in self.bed.agent.events_since(self.exit_mark):
            if e[2] == "l2-exit" and e[3] == self.pid:
                return e
        return None

    def stop(self):
        if self.exited():
            return
        try:
            self.qmp.send("quit")
            h.wait_for(self.exited, 20, "L2 to exit", step=0.2)
        except h.HarnessError:
            self.bed.agent.call("l2-kill", check=False)
            h.wait_for(self.exited, 20, "L2 to die", step=0.2)


def l2_args(ports=1, port_driver="pcie-hotplug-passthru", mem_mib=128,
            policy=True, extra=()):
    """The L2 command line: q35, qtest, PORTS ports rp1.. at 00:04.0 on,
    of PORT_DRIVER (a list: one driver per port)."""
    a = ["-machine", "q35,memory-backend=m0", "-accel", "qtest",
         "-nodefaults", "-display", "none",
         "-object", "memory-backend-memfd,id=m0,size=%dM,share=on" % mem_mib,
         "-chardev", "serial,id=qmp,path=/dev/ttyS2",
         "-mon", "chardev=qmp,mode=control",
         "-chardev", "serial,id=qt,path=/dev/ttyS3",
         "-qtest", "chardev:qt", "-qtest-log", "none",
         "-trace", "passthru_*", "-trace", "vfio_nvme*"]
    if policy:
        a += ["-drive", "if=pflash,format=raw,readonly=on,file=" + OVMF_L1,
              "-overcommit", "mem-lock=on"]
    drivers = [port_driver] * ports if isinstance(port_driver, str) \
        else port_driver
    for n in range(1, ports + 1):
        a += ["-device", "%s,id=rp%d,bus=pcie.0,chassis=%d,addr=0x%x"
              % (drivers[n - 1], n, n, 3 + n)]
    return a + list(extra)


# --------------------------------------------------------------------------
# L0 + L1


class Bed:
    def __init__(self, name, l1_mem_mib=1024, image="l1.img", spare_ports=0):
        """IMAGE: L1's initramfs in build/nested (l1-libvirt.img: with
        libvirt).  SPARE_PORTS: empty root ports after rp5, for more
        device_adds in L0."""
        self.name = name
        self.image = image
        self.slots = dict(SLOTS)
        for n in range(6, 6 + spare_ports):
            self.slots[n] = "%x" % (0x10 + n - 1)
        self.run_dir = h.new_run_dir("nested-" + name)
        self.mem = l1_mem_mib
        self.proc = None
        self.qmp = None         # L0's QMP
        self.agent = None       # L1's agent
        self.qmp_line = None
        self.qt_line = None
        self.l2_count = 0
        self.p = lambda f: os.path.join(self.run_dir, f)

    def command_line(self):
        kernel = os.path.join(NESTED, "vmlinuz")
        initrd = os.path.join(NESTED, self.image)
        for f in (kernel, initrd):
            if not os.path.exists(f):
                raise BedError("missing %s (scripts/nested/build-bed.sh)" % f)
        for i in (1, 2, 5):
            h.make_image(self.p("nvme%d.img" % i), 64)
        sock = lambda n: "socket,id=%s,server=on,wait=off,path=%s" % (
            n, self.p(n + ".sock"))
        cmd = [h.qemu_binary(), "-name", "l0", "-accel", "tcg",
               "-machine", "q35", "-cpu", "max", "-smp", "1",
               "-m", "%dM" % self.mem, "-nodefaults", "-display", "none",
               "-no-reboot",
               "-device", "intel-iommu,intremap=on,caching-mode=on",
               "-kernel", kernel, "-initrd", initrd,
               "-append", "console=ttyS0 intel_iommu=on iommu=pt "
               "no_timer_check panic=-1 loglevel=6",
               "-chardev", "file,id=con,path=" + self.p("l1-console.log"),
               "-serial", "chardev:con",
               "-chardev", sock("agent"), "-serial", "chardev:agent",
               "-chardev", sock("l2qmp"), "-serial", "chardev:l2qmp",
               "-chardev", sock("l2qt"), "-serial", "chardev:l2qt",
               "-qmp", "unix:%s,server=on,wait=off" % self.p("l0qmp.sock")]
        for n, slot in self.slots.items():
            cmd += ["-device", "pcie-root-port,id=l0rp%d,bus=pcie.0,"
                    "chassis=%d,addr=0x%s" % (n, n, slot)]
        for i in (1, 2):
            cmd += ["-drive", "if=none,id=d%d,format=raw,file=%s"
                    % (i, self.p("nvme%d.img" % i)),
                    "-device", "nvme,id=l0nvme%d,bus=l0rp%d,serial=bed%d,"
                    "drive=d%d" % (i, i, i, i)]
        cmd += ["-device", "e1000e,id=l0nic,bus=l0rp3,romfile="]
        # functions of one device without ACS: one IOMMU group in L1
        cmd += ["-device", "e1000e,id=l0nic5,bus=l0rp5,addr=0.0,"
                "multifunction=on,romfile=",
                "-drive", "if=none,id=d5,format=raw,file=%s"
                % self.p("nvme5.img"),
                "-device", "nvme,id=l0nvme5,bus=l0rp5,addr=0.1,serial=bed5,"
                "drive=d5"]
        return cmd

    def start(self, boot_timeout=240):
        for f in ("agent.sock", "l2qmp.sock", "l2qt.sock", "l0qmp.sock"):
            if os.path.exists(self.p(f)):
                os.unlink(self.p(f))
        cmd = self.command_line()
        self.t_start = h.now()
        self.log = open(self.p("l0.log"), "w")
        self.log.write("# %s\n" % " ".join(cmd))
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     cwd=self.run_dir, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            h.wait_for(lambda: os.path.exists(self.p("l0qmp.sock"))
                       or self.proc.poll() is not None, 30, "L0 sockets")
            if self.proc.poll() is not None:
                raise BedError("L0 exited with %s: %s"
                               % (self.proc.returncode, self.tail("l0.log")))
            self.qmp = h.Qmp(self.p("l0qmp.sock"),
                             log=open(self.p("l0-qmp.log"), "w"))
            self.agent = h.Agent(self.p("agent.sock"),
                                 log=open(self.p("l1-agent.log"), "w"))
            self.qmp_line = Line(self.p("l2qmp.sock"))
            self.qt_line = Line(self.p("l2qt.sock"))
            t, up, kernel = self.agent.wait_ready(boot_timeout)
            self.boot_wall = t - self.t_start
            self.kernel = kernel
        except BaseException as e:
            self.stop()
            if isinstance(e, h.HarnessError):
                raise BedError("L1 boot: %s; console: %s"
                               % (e, self.tail("l1-console.log")))
            raise
        return self

    def evidence(self, commands):
        """What to show after a failure: the output of each shell command
        in COMMANDS while L1 runs, else the end of L0's log and L1's
        console; and where the logs are."""
        out = []
        if self.alive():
            for c in commands:
                out += self.sh(c, check=False)
        else:
            out.append("L0 gone: " + self.tail("l0.log"))
            out.append("L1 console: " + self.tail("l1-console.log"))
        return out + ["logs: " + self.run_dir]

    def tail(self, f, n=5):
        try:
            with open(self.p(f), errors="replace") as fh:
                return " | ".join(fh.read().splitlines()[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- L1 ----

    def sh(self, command, timeout=60, check=True):
        """Run COMMAND in L1's shell: its output lines (rc 0 wanted)."""
        _, text, data, _ = self.agent.call("sh " + command, timeout=timeout)
        if check and text != "rc=0":
            raise BedError("L1: '%s': %s: %s" % (command, text, " | ".join(data)))
        return data

    def ok(self, command, timeout=60):
        """Whether COMMAND succeeds in L1's shell."""
        return self.agent.call("sh " + command, timeout=timeout)[1] == "rc=0"

    def bg(self, tag, command):
        """Start COMMAND in L1's background; returns the agent mark for
        wait_bg."""
        m = self.agent.mark()
        self.agent.call("bg %s %s" % (tag, command))
        return m

    def wait_bg(self, tag, mark, timeout):
        """(rc, seconds the command took on L1's clock, output) of bg TAG."""
        ev = self.agent.wait_event("bg-done", tag, timeout, since=mark)
        fields = ev[4].split(" ", 2)
        rc = int(fields[0].partition("=")[2])
        start = float(fields[1].partition("=")[2])
        return rc, ev[1] - start, fields[2] if len(fields) > 2 else ""

    def write_file(self, path, text):
        """Write TEXT to PATH in L1 (one agent line, base64)."""
        self.sh("echo %s | base64 -d >%s"
                % (base64.b64encode(text.encode()).decode(), path))

    def slot_bdf(self, n, fn=0):
        """L1's address of function FN of the device behind L0's root
        port rp N."""
        return self.sh("below %s %d" % (self.slots[n], fn))[0].strip()

    def group_devices(self, bdf):
        """The devices in BDF's IOMMU group in L1, sorted."""
        return sorted(x.strip() for x in self.sh(
            "ls /sys/bus/pci/devices/%s/iommu_group/devices" % bdf))

    def device_info(self, bdf):
        """(class, driver or '') of BDF in L1."""
        out = self.sh("cat /sys/bus/pci/devices/%s/class; "
                      "basename \"$(readlink /sys/bus/pci/devices/%s/driver)\""
                      % (bdf, bdf))
        return out[0].strip(), out[1].strip() if len(out) > 1 else ""

    def nvme_disk(self, bdf, timeout=30):
        """The namespace block device (nvmeXn1) of the NVMe BDF on nvme in
        L1, once /dev has it."""
        disk = h.wait_for(lambda: self.sh(
            "ls /sys/bus/pci/devices/%s/nvme/*/ 2>/dev/null | "
            "grep '^nvme[0-9]*n1$'" % bdf, check=False), timeout,
            "nvme disk of %s in L1" % bdf, step=0.5)[0].strip()
        h.wait_for(lambda: self.ok("test -b /dev/%s" % disk), 10,
                   "/dev/%s" % disk, step=0.5)
        return disk

    def bind(self, bdf, driver):
        """Bind BDF to DRIVER in L1; for vfio-pci returns /dev/vfio/N."""
        self.sh("bind %s %s" % (bdf, driver))
        if driver == "vfio-pci":
            g = self.sh("group %s" % bdf)[0].strip()
            self.sh("test -c /dev/vfio/%s" % g)
            return "/dev/vfio/" + g
        return None

    def start_l2(self, ports=1, **kw):
        self.l2_count += 1
        return L2(self, l2_args(ports, **kw), "l2-%d" % self.l2_count).start()

    def stop(self):
        if self.alive():
            try:
                self.qmp.send("quit")
                self.proc.wait(10)
            except (h.HarnessError, subprocess.TimeoutExpired, AttributeError):
                pass
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)
        for x in (self.qmp, self.agent, self.qmp_line, self.qt_line):
            if x:
                x.close()


# --------------------------------------------------------------------------
# the main of a nested test


class Run:
    """The state of a nested test file that runs one L2 at a time: .bed,
    .l2, .times; close() and evidence() for tap_main.  EVIDENCE: the L1
    shell commands whose output a failure shows."""
    EVIDENCE = ("dmesg | tail -n 8",)

    def __init__(self):
        self.bed = None
        self.l2 = None
        self.times = {}

    def close(self):
        if self.l2:
            try:
                self.l2.stop()
            except Exception:   # noqa: BLE001
                pass
        if self.bed:
            self.bed.stop()

    def evidence(self):
        out = []
        if self.l2:
            out.append("L2 log: " + self.l2.log_tail())
            out.append("L2 events: %s" % [e["event"] + str(e.get("data", ""))
                                          for _, e in self.l2.qmp.events[-6:]])
        if self.bed:
            out += self.bed.evidence(self.EVIDENCE)
        return out


def tap_main(run, tests, required=("boot",)):
    """Run run.t_<test>() for each of TESTS, as TAP.  Each returns
    (description, diagnostics) or raises; a failure prints run.evidence()
    and the next test runs all the same, unless the failed one is in
    REQUIRED: the rest are then reported as not run.  run.bed is the Bed
    once t_boot made it; run.times a dict of measured figures;
    run.close() ends L2, the bed and the rest."""
    print("1..%d" % len(tests))
    t_all = time.monotonic()
    broken = None
    try:
        for t in tests:
            t0 = time.monotonic()
            if broken:
                h.tap(False, "%s: not run, %s failed" % (t, broken))
                continue
            try:
                if t != "boot" and run.bed is None:
                    raise h.HarnessError("no bed (boot failed)")
                desc, diag = getattr(run, "t_" + t.replace("-", "_"))()
                h.tap(True, "%s: %s" % (t, desc),
                      diag + ["took %.1f s" % (time.monotonic() - t0)])
            except Exception as e:      # noqa: BLE001 - reported, go on
                diag = []
                try:
                    diag = run.evidence()
                except Exception as e2:     # noqa: BLE001
                    diag = ["(no evidence: %s)" % e2]
                if not isinstance(e, (h.Fail, h.HarnessError)):
                    diag.append(traceback.format_exc())
                h.tap(False, "%s: %s" % (t, e), diag)
                if t in required:
                    broken = t
    finally:
        run.close()
    h.note("times (s): %s" % {k: tuple(round(x, 2) for x in v)
                              for k, v in run.times.items()})
    h.note("total %.1f s" % (time.monotonic() - t_all))
