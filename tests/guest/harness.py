# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive a real Linux guest through NVMe passthrough hotplug.

Python 3 standard library only.  The pieces:

Server   a vfio-user server process: the "host NVMe" on a raw image
VM       a UEFI (OVMF) q35 guest booted with -kernel/-initrd, one
         pcie-hotplug-passthru port per device, QMP on a unix socket and
         the guest agent (tests/guest/init) on its second serial port
hot_add, remove_orderly, surprise_kill, surprise_qmp
         one hotplug operation each, waiting for both sides (QMP events
         and what the guest itself reports) and returning the timings

Every wait is bounded; a timeout raises HarnessError with what was seen.
Logs of a run go to BUILD_DIR/guest/run-<name>-<time>/.
"""

import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(TOP, os.environ.get("BUILD_DIR") or "build")  # abs wins
GUEST = os.path.join(BUILD, "guest")
QEMU = os.environ.get("QEMU") or os.path.join(BUILD, "qemu-build",
                                              "qemu-system-x86_64")
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
MiB = 1 << 20



def try_connect(sock, path):
    """Connect SOCK to the unix socket PATH; False while it is not there."""
    try:
        sock.connect(path)
        return True
    except OSError:
        return False

def listening(path):
    """A unix socket listens at PATH.  The file appears at bind(), a moment
    before listen(): a client connecting in between is refused.
    /proc/net/unix flags a listening socket with __SO_ACCEPTCON (0x10000)."""
    try:
        with open("/proc/net/unix") as f:
            for line in f:
                fields = line.split()
                if (len(fields) >= 8 and fields[-1] == path
                        and int(fields[3], 16) & 0x10000):
                    return True
        return False
    except (OSError, ValueError):
        return os.path.exists(path)


class HarnessError(Exception):
    pass


def now():
    return time.monotonic()


def wait_for(pred, timeout, what, step=0.02):
    """Poll pred() until it returns something true, or raise."""
    end = now() + timeout
    while True:
        r = pred()
        if r:
            return r
        if now() >= end:
            raise HarnessError("timeout after %.1f s waiting for %s"
                               % (timeout, what))
        time.sleep(step)


_accel = None


def _guest_accel():
    global _accel
    if _accel is None:
        _accel = guest_accel()
    return _accel


def guest_accel():
    """TCG, unless GUEST_ACCEL says otherwise.  GUEST_ACCEL=auto uses KVM
    only where a probe shows that it can run OVMF: on some machines
    /dev/kvm exists but OVMF stops with "KVM internal error"."""
    want = os.environ.get("GUEST_ACCEL", "tcg")
    if want != "auto":
        return want
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    probe = subprocess.Popen(
        [qemu_binary(), "-accel", "kvm", "-machine", "q35", "-m", "256M",
         "-nodefaults", "-display", "none", "-monitor", "none",
         "-serial", "none",
         "-drive", "if=pflash,format=raw,readonly=on,file=" + OVMF_CODE],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Still running after 5 s without an error: OVMF runs under KVM
        probe.wait(timeout=5)
        return "tcg"
    except subprocess.TimeoutExpired:
        probe.kill()
        err = probe.communicate()[1].decode(errors="replace")
        return "tcg" if "error" in err.lower() else "kvm"


def qemu_binary():
    """The QEMU binary; it may be relinked under us: retry once."""
    for _ in range(2):
        if os.access(QEMU, os.X_OK):
            return QEMU
        time.sleep(5)
    raise HarnessError("no QEMU binary at %s (run make build)" % QEMU)


def new_run_dir(name):
    d = os.path.join(GUEST, "run-%s-%s" % (name, time.strftime("%Y%m%d-%H%M%S")))
    n = 0
    base = d
    while os.path.exists(d):
        n += 1
        d = "%s.%d" % (base, n)
    os.makedirs(d)
    return d


def make_image(path, size_mib=256):
    with open(path, "wb") as f:
        f.truncate(size_mib * MiB)
    return path


def image_md5(path, offset_mib, len_mib=1):
    with open(path, "rb") as f:
        f.seek(offset_mib * MiB)
        return hashlib.md5(f.read(len_mib * MiB)).hexdigest()


def pattern_bytes(pattern):
    """What the agent's write command puts on the disk: yes PATTERN | head -c 1M."""
    line = (pattern + "\n").encode()
    return (line * (MiB // len(line) + 1))[:MiB]


class Timeline:
    """Steps of a run with host time (and guest time when known)."""

    def __init__(self):
        self.t0 = now()
        self.rows = []

    def add(self, what, **info):
        self.rows.append((now() - self.t0, what, info))

    def format(self):
        out = []
        for t, what, info in self.rows:
            extra = "  ".join("%s=%s" % (k, v) for k, v in info.items())
            out.append("  %7.2f s  %-34s %s" % (t, what, extra))
        return "\n".join(out)


# --------------------------------------------------------------------------
# vfio-user server


class Server:
    """A vfio-user NVMe server on IMAGE, listening on SOCK."""

    count = 0

    def __init__(self, run_dir, image, name="nvme", serial="deadbeef",
                 extra_args=()):
        Server.count += 1
        self.run_dir = run_dir
        self.image = image
        self.name = name
        self.serial = serial
        self.extra_args = list(extra_args)    # e.g. -trace pci_nvme_*
        self.sock = os.path.join(run_dir, "%s.sock" % name)
        self.log = os.path.join(run_dir, "server-%s-%d.log" % (name, Server.count))
        self.proc = None

    def start(self, timeout=30):
        return self.launch().wait_ready(timeout)

    def launch(self):
        """Start the process without waiting for its socket (wait_ready):
        many servers start in parallel."""
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        obj = {"qom-type": "x-vfio-user-server", "id": "vfu0",
               "socket": {"type": "unix", "path": self.sock},
               "device": "nvme0"}
        cmd = [qemu_binary(), "-machine", "x-remote,vfio-user=on",
               "-nodefaults", "-display", "none",
               "-drive", "if=none,id=d0,file=%s,format=raw" % self.image,
               "-device", "nvme,id=nvme0,serial=%s,drive=d0" % self.serial,
               "-object", json.dumps(obj)] + self.extra_args
        with open(self.log, "a") as log:
            log.write("# %s\n" % " ".join(cmd))
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout=30):
        wait_for(lambda: listening(self.sock) or self.proc.poll() is not None,
                 timeout, "vfio-user server socket %s" % self.sock)
        if self.proc.poll() is not None:
            raise HarnessError("vfio-user server exited with %s, see %s"
                               % (self.proc.returncode, self.log))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: the host device vanishes."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        return self.wait(10)

    def wait(self, timeout=10):
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            if self.wait(5) is None:
                self.proc.kill()
                self.wait(5)


# --------------------------------------------------------------------------
# QMP


class Qmp:
    def __init__(self, path, timeout=30, log=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        wait_for(lambda: try_connect(self.sock, path), timeout, "QMP socket")
        self.file = self.sock.makefile("rb")
        self._init_state(log)
        greeting = json.loads(self.file.readline())
        if "QMP" not in greeting:
            raise HarnessError("no QMP greeting: %r" % greeting)
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        self.cmd("qmp_capabilities")

    def _init_state(self, log):
        self.log = log
        self.events = []           # (host time, event dict)
        self.cond = threading.Condition()
        self.replies = queue.Queue()
        self.lock = threading.Lock()
        self.closed = False

    def _dispatch(self, raw):
        """One line from QEMU, an event or a reply (ValueError: no JSON)."""
        t = now()
        if self.log:
            self.log.write("%.3f <- %s\n" % (t, raw.rstrip("\n")))
            self.log.flush()
        msg = json.loads(raw)
        if "event" in msg:
            with self.cond:
                self.events.append((t, msg))
                self.cond.notify_all()
        else:
            self.replies.put((t, msg))

    def _reader_done(self):
        self.closed = True
        self.replies.put((now(), None))
        with self.cond:
            self.cond.notify_all()

    def _reader(self):
        try:
            for raw in self.file:
                self._dispatch(raw.decode(errors="replace"))
        except (OSError, ValueError):
            pass
        self._reader_done()

    def send(self, name, **args):
        """Run one command: return (reply dict, seconds it took)."""
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        with self.lock:
            t0 = now()
            if self.log:
                self.log.write("%.3f -> %s\n" % (t0, json.dumps(msg)))
            try:
                self.sock.sendall(json.dumps(msg).encode() + b"\n")
            except OSError as e:
                raise HarnessError("QMP %s: %s" % (name, e))
            try:
                t1, reply = self.replies.get(timeout=60)
            except queue.Empty:
                raise HarnessError("QMP %s: no reply in 60 s" % name)
        if reply is None:
            raise HarnessError("QMP %s: connection closed" % name)
        return reply, t1 - t0

    def cmd(self, name, **args):
        """Run one command that must succeed: return its 'return'."""
        reply, _ = self.send(name, **args)
        if "error" in reply:
            raise HarnessError("QMP %s failed: %s" % (name, reply["error"]["desc"]))
        return reply["return"]

    def mark(self):
        with self.cond:
            return len(self.events)

    def wait_event(self, pred, timeout, since=0, what="QMP event"):
        """First event from index SINCE on with pred(event): (time, event, index)."""
        end = now() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.events):
                    t, ev = self.events[i]
                    i += 1
                    if pred(ev):
                        return t, ev, i
                left = end - now()
                if left <= 0 or self.closed:
                    seen = [e["event"] + ":" + json.dumps(e.get("data", {}))
                            for _, e in self.events[since:]]
                    raise HarnessError("no %s within %.1f s%s; seen since: %s"
                                       % (what, timeout,
                                          " (QMP closed)" if self.closed else "",
                                          "; ".join(seen) or "nothing"))
                self.cond.wait(left)

    def wait_hotplug(self, device, operation, phases=("completed", "failed"),
                     timeout=60, since=0):
        def pred(ev):
            d = ev.get("data", {})
            return (ev["event"] == "PASSTHRU_HOTPLUG" and d.get("device") == device
                    and d.get("operation") == operation and d.get("phase") in phases)
        return self.wait_event(pred, timeout, since,
                               "PASSTHRU_HOTPLUG %s %s %s" % (device, operation,
                                                              "/".join(phases)))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# guest agent


class Agent:
    """Line protocol with tests/guest/init over the VM's ttyS1."""

    def __init__(self, path, timeout=30, log=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        wait_for(lambda: try_connect(self.sock, path), timeout, "agent socket")
        self.log = log
        self.cond = threading.Condition()
        self.events = []        # (host time, guest uptime, kind, name, rest)
        self.lines = []         # everything, for the log
        self.replies = {}       # id -> (status, text, data lines, host time)
        self.data = {}
        self.ready = None       # (host time, guest uptime, kernel)
        self.closed = False
        self.next_id = 1
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self):
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self._line(raw.decode(errors="replace").strip("\r\0 "))
        self.closed = True
        with self.cond:
            self.cond.notify_all()

    def _line(self, line):
        t = now()
        if not line:
            return
        if self.log:
            self.log.write("%.3f %s\n" % (t, line))
            self.log.flush()
        parts = line.split(" ", 3)
        with self.cond:
            if parts[0] == "EVT" and len(parts) >= 3:
                try:
                    up = float(parts[1])
                except ValueError:
                    up = None
                rest = parts[3] if len(parts) > 3 else ""
                name, _, extra = rest.partition(" ")
                self.events.append((t, up, parts[2], name, extra))
            elif parts[0] == "READY":
                self.ready = (t, float(parts[1]), " ".join(parts[2:]))
            elif parts[0] == "DATA" and len(parts) >= 2:
                self.data.setdefault(parts[1], []).append(
                    line.split(" ", 2)[2] if line.count(" ") >= 2 else "")
            elif parts[0] in ("OK", "ERR") and len(parts) >= 2:
                text = line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
                self.replies[parts[1]] = (parts[0], text,
                                          self.data.pop(parts[1], []), t)
            self.cond.notify_all()

    def wait_ready(self, timeout):
        with self.cond:
            end = now() + timeout
            while self.ready is None:
                left = end - now()
                if left <= 0 or self.closed:
                    raise HarnessError("guest agent not READY within %.0f s" % timeout)
                self.cond.wait(left)
        return self.ready

    def call(self, command, timeout=30, check=True):
        """Run COMMAND in the guest: (status, text, data lines, seconds)."""
        cid, t0 = self.send(command)
        status, text, data, t1 = self.wait_reply(cid, command, timeout, check,
                                                 start=t0)
        return status, text, data, t1 - t0

    def send(self, command):
        """Send COMMAND without waiting: (id, host time it was sent)."""
        with self.lock:
            cid = "c%d" % self.next_id
            self.next_id += 1
        t0 = now()
        try:
            self.sock.sendall(("%s %s\n" % (cid, command)).encode())
        except OSError as e:
            raise HarnessError("agent: %s: %s" % (command, e))
        return cid, t0

    def _wait(self, pred, command, timeout, start):
        end = (start or now()) + timeout
        with self.cond:
            while not pred():
                left = end - now()
                if left <= 0 or self.closed:
                    raise HarnessError("agent: no answer to '%s' within %.0f s"
                                       % (command, timeout))
                self.cond.wait(left)

    def wait_data(self, cid, command, timeout=30, start=None):
        """Wait for a first DATA line (or the end) of command CID."""
        self._wait(lambda: self.data.get(cid) or cid in self.replies,
                   command, timeout, start)

    def wait_reply(self, cid, command, timeout=30, check=True, start=None):
        """The end of command CID: (status, text, data lines, host time
        the OK/ERR line arrived)."""
        self._wait(lambda: cid in self.replies, command, timeout, start)
        with self.cond:
            status, text, data, t1 = self.replies.pop(cid)
        if check and status != "OK":
            raise HarnessError("agent: '%s' failed: %s" % (command, text))
        return status, text, data, t1

    def mark(self):
        with self.cond:
            return len(self.events)

    def wait_event(self, kind, name=None, timeout=30, since=0):
        """First guest event KIND (name: exact, or a prefix ending in '*')."""
        def match(n):
            if name is None:
                return True
            if name.endswith("*"):
                return n.startswith(name[:-1])
            return n == name
        end = now() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.events):
                    ev = self.events[i]
                    i += 1
                    if ev[2] == kind and match(ev[3]):
                        return ev
                left = end - now()
                if left <= 0 or self.closed:
                    seen = ["%s %s" % (e[2], e[3]) for e in self.events[since:]]
                    raise HarnessError("guest reported no %s %s within %.1f s; "
                                       "it reported: %s"
                                       % (kind, name or "", timeout,
                                          ", ".join(seen) or "nothing"))
                self.cond.wait(left)

    def events_since(self, since):
        with self.cond:
            return list(self.events[since:])

    def clock(self):
        """Guest uptime minus host monotonic time (from a ping)."""
        t0 = now()
        _, text, _, _ = self.call("ping", timeout=20)
        t1 = now()
        return float(text.split()[1]) - (t0 + t1) / 2

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# VM


class VM:
    """A UEFI q35 guest with passthrough hotplug ports rp1..rpN."""

    def __init__(self, run_dir, ports=1, mode="acpi", mem_mib=512, smp=2,
                 name="vm", port_driver="pcie-hotplug-passthru", port_props="",
                 multifunction=False, extra_args=(), extra_ports=()):
        """PORTS ports rp1..rpN of PORT_DRIVER (pcie-hotplug-passthru, or
        e.g. pcie-root-port for a VM without passthrough hotplug) with
        PORT_PROPS (",prop=value..." appended to each).  MULTIFUNCTION puts
        eight ports per slot (addr=8+i/8.i%8, multifunction=on), for more
        ports than q35 has free slots.  EXTRA_ARGS go at the end of the
        command line (e.g. -blockdev).  EXTRA_PORTS, (id, driver, props)
        each, come after them: a VM with ports of two kinds."""
        self.run_dir = run_dir
        self.ports = ["rp%d" % (i + 1) for i in range(ports)]
        self.extra_ports = list(extra_ports)
        self.port_driver = port_driver
        self.port_props = port_props
        self.multifunction = multifunction
        self.extra_args = list(extra_args)
        self.mode = mode
        self.mem = mem_mib
        self.smp = smp
        self.name = name
        self.proc = None
        self.qmp = None
        self.agent = None
        self.clock_offset = None
        self.steps = []         # (host time, what the host did)
        self.p = lambda f: os.path.join(run_dir, "%s-%s" % (name, f))

    def command_line(self):
        kernel = os.path.join(GUEST, "vmlinuz")
        initrd = os.path.join(GUEST, "initrd.img")
        for f in (kernel, initrd, OVMF_CODE, OVMF_VARS):
            if not os.path.exists(f):
                raise HarnessError("missing %s (run scripts/guest/build-guest.sh)" % f)
        vars_copy = self.p("OVMF_VARS.fd")
        shutil.copyfile(OVMF_VARS, vars_copy)
        append = ("console=ttyS0 panic=-1 loglevel=8 "
                  'dyndbg="module pciehp +p; module acpiphp +p"')
        cmd = [qemu_binary(), "-name", self.name,
               "-machine", "q35,memory-backend=m0", "-accel", _guest_accel(),
               "-smp", str(self.smp), "-m", "%dM" % self.mem,
               "-object", "memory-backend-memfd,id=m0,size=%dM,share=on" % self.mem,
               "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMF_CODE,
               "-drive", "if=pflash,format=raw,unit=1,file=" + vars_copy,
               "-nodefaults", "-nic", "none", "-vga", "none", "-display", "none",
               "-no-reboot", "-overcommit", "mem-lock=on",
               "-kernel", kernel, "-initrd", initrd, "-append", append,
               "-chardev", "file,id=con,path=" + self.p("console.log"),
               "-serial", "chardev:con",
               "-chardev", "socket,id=agent,server=on,wait=off,path="
               + self.p("agent.sock"),
               "-serial", "chardev:agent",
               "-qmp", "unix:%s,server=on,wait=off" % self.p("qmp.sock"),
               "-trace", "passthru_*"]
        if self.mode == "native":
            cmd += ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
        ports = [(p, self.port_driver, self.port_props) for p in self.ports]
        for i, (port, driver, props) in enumerate(ports + self.extra_ports):
            dev = "%s,id=%s,bus=pcie.0,chassis=%d" % (driver, port, i + 1)
            if self.multifunction:
                dev += ",addr=%d.%d,multifunction=on" % (8 + i // 8, i % 8)
            cmd += ["-device", dev + props]
        return cmd + self.extra_args

    def start(self, boot_timeout=120):
        for f in ("agent.sock", "qmp.sock"):
            if os.path.exists(self.p(f)):
                os.unlink(self.p(f))
        cmd = self.command_line()
        # e.g. GUEST_QEMU_PREFIX="gdb -batch -ex run -ex bt --args"
        cmd = os.environ.get("GUEST_QEMU_PREFIX", "").split() + cmd
        self.t_start = now()
        self.stderr = open(self.p("qemu.log"), "w")
        self.stderr.write("# %s\n" % " ".join(cmd))
        self.stderr.flush()
        def core():
            # GUEST_CORE=1: let QEMU dump core in the run folder on abort
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                                      resource.RLIM_INFINITY))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, cwd=self.run_dir,
                                     stdout=self.stderr, stderr=subprocess.STDOUT,
                                     preexec_fn=core if os.environ.get("GUEST_CORE")
                                     else None)
        try:
            wait_for(lambda: (os.path.exists(self.p("qmp.sock"))
                              and os.path.exists(self.p("agent.sock")))
                     or self.proc.poll() is not None, 30, "QEMU sockets")
            if self.proc.poll() is not None:
                raise HarnessError("QEMU exited with %s: %s"
                                   % (self.proc.returncode, self.tail_log()))
            self.qmp = Qmp(self.p("qmp.sock"), log=open(self.p("qmp.log"), "w"))
            self.agent = Agent(self.p("agent.sock"), log=open(self.p("agent.log"), "w"))
            t, up, kernel = self.agent.wait_ready(boot_timeout)
            self.boot_wall = t - self.t_start
            self.boot_guest = up
            self.kernel = kernel
            self.clock_offset = self.agent.clock()
        except HarnessError as e:
            self.kill()
            raise HarnessError("%s; QEMU log: %s" % (e, self.tail_log(3)))
        except BaseException:
            self.kill()
            raise
        return self

    def tail_log(self, n=5):
        try:
            with open(self.p("qemu.log")) as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def step(self, text):
        self.steps.append((now(), text))

    def guest_time(self, host_t):
        return host_t + self.clock_offset

    def query(self):
        return self.qmp.cmd("query-passthru-hotplug")

    def port_state(self, port):
        for p in self.query()["ports"]:
            if p["id"] == port:
                return p
        raise HarnessError("no port %s" % port)

    def rss_kib(self):
        """VmRSS of the VM's QEMU process, in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise HarnessError("no VmRSS for pid %d" % self.proc.pid)

    def resync_clock(self):
        """Measure the guest clock offset again (TCG guests drift)."""
        self.clock_offset = self.agent.clock()
        return self.clock_offset

    def shutdown(self, timeout=20):
        if self.alive():
            try:
                self.qmp.send("quit")
            except HarnessError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self):
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for x in (self.qmp, self.agent):
            if x:
                x.close()


# --------------------------------------------------------------------------
# hotplug operations: each waits for QEMU and for the guest


def _guest_lat(vm, host_t0, ev):
    """Guest-side latency: guest timestamp of EV minus guest time at HOST_T0."""
    if ev is None or ev[1] is None:
        return None
    return ev[1] - vm.guest_time(host_t0)


def hot_add(vm, port, server, dev_id="nvme0", timeout=90):
    """device_add a vfio-user-nvme on PORT; wait for the add to complete in
    QEMU and for the guest to show the PCI device, controller and disk."""
    qm, am = vm.qmp.mark(), vm.agent.mark()
    vm.step("device_add %s on %s" % (dev_id, port))
    t0 = now()
    # After a surprise removal the port takes no device until the guest has
    # acknowledged the removal (ACPI _EJ0; native: slot powered off):
    # retry like a management stack would.  Nothing else is retried.
    while True:
        reply, qmp_s = vm.qmp.send("device_add", driver="vfio-user-nvme",
                                   id=dev_id, bus=port,
                                   socket={"type": "unix", "path": server.sock})
        desc = reply.get("error", {}).get("desc", "")
        if "has not yet acknowledged the removal" not in desc or \
                now() - t0 > timeout:
            break
        time.sleep(0.1)
    ack_wait_s = now() - t0
    if "error" in reply:
        raise HarnessError("device_add failed: %s" % reply["error"]["desc"])
    t0 = now() - qmp_s
    def done(e):
        # the add ends, or the device goes away without the add ending
        d = e.get("data", {})
        if e["event"] == "DEVICE_DELETED":
            return d.get("device") == dev_id
        return (e["event"] == "PASSTHRU_HOTPLUG" and d.get("device") == dev_id
                and d.get("phase") in ("completed", "failed"))
    tc, ev, _ = vm.qmp.wait_event(done, timeout, qm, "end of the add of %s" % dev_id)
    d = ev.get("data", {})
    if ev["event"] != "PASSTHRU_HOTPLUG" or d.get("operation") != "add":
        seen = ["%s %s" % (e["event"], json.dumps(e.get("data", {})))
                for _, e in vm.qmp.events[qm:]]
        raise HarnessError("the add of %s never completed: the device went away "
                           "first (events: %s)" % (dev_id, "; ".join(seen)))
    if d["phase"] != "completed":
        raise HarnessError("add %s: %s" % (d["phase"], d))
    r = _guest_device_added(vm, t0, am, timeout)
    r.update({
        "qmp_reply_ms": round(qmp_s * 1000),
        "completed_ms": round((tc - t0) * 1000),
        "duration_ms": ev["data"].get("duration-ms"),
        "ack_wait_s": round(ack_wait_s - qmp_s, 3),
    })
    return r


def _guest_device_added(vm, t0, am, timeout):
    """Wait for the guest to show a new PCI device, NVMe controller and
    disk (agent events since mark AM); latencies from host time T0."""
    pci = vm.agent.wait_event("pci-add", None, timeout, since=am)
    nvme = vm.agent.wait_event("nvme-add", "nvme*", timeout, since=am)
    blk = vm.agent.wait_event("blk-add", "nvme*", timeout, since=am)
    return {
        "bdf": pci[3], "ids": pci[4], "ctrl": nvme[3], "disk": blk[3],
        "guest_pci_s": _guest_lat(vm, t0, pci),
        "guest_nvme_s": _guest_lat(vm, t0, nvme),
        "guest_disk_s": _guest_lat(vm, t0, blk),
        "host_disk_s": blk[0] - t0,
    }


def _wait_removed(vm, dev_id, operation, qm, am, t0, bdf, disk, timeout):
    tc, ev, _ = vm.qmp.wait_hotplug(dev_id, operation, timeout=timeout, since=qm)
    if ev["data"]["phase"] != "completed":
        raise HarnessError("%s %s: %s" % (operation, ev["data"]["phase"], ev["data"]))
    td, _, _ = vm.qmp.wait_event(
        lambda e: e["event"] == "DEVICE_DELETED"
        and e.get("data", {}).get("device") == dev_id, timeout, qm, "DEVICE_DELETED")
    gblk = vm.agent.wait_event("blk-del", disk, timeout, since=am) if disk else None
    gpci = vm.agent.wait_event("pci-del", bdf, timeout, since=am) if bdf else None
    return {
        "completed_ms": round((tc - t0) * 1000),
        "deleted_ms": round((td - t0) * 1000),
        "duration_ms": ev["data"].get("duration-ms"),
        "cause": ev["data"].get("cause"),
        "reason": ev["data"].get("reason"),
        "guest_disk_gone_s": _guest_lat(vm, t0, gblk),
        "guest_pci_gone_s": _guest_lat(vm, t0, gpci),
    }


def remove_orderly(vm, dev_id, bdf=None, disk=None, timeout=60):
    """device_del on a port with removal=orderly: the guest releases it."""
    qm, am = vm.qmp.mark(), vm.agent.mark()
    vm.step("device_del %s (orderly)" % dev_id)
    t0 = now()
    reply, qmp_s = vm.qmp.send("device_del", id=dev_id)
    if "error" in reply:
        raise HarnessError("device_del failed: %s" % reply["error"]["desc"])
    r = _wait_removed(vm, dev_id, "remove", qm, am, t0, bdf, disk, timeout)
    r["qmp_reply_ms"] = round(qmp_s * 1000)
    return r


def surprise_kill(vm, server, dev_id, bdf=None, disk=None, timeout=60):
    """kill -9 the vfio-user server: the host device vanishes."""
    qm, am = vm.qmp.mark(), vm.agent.mark()
    vm.step("kill -9 vfio-user server pid %d" % server.proc.pid)
    t0 = now()
    server.kill()
    r = _wait_removed(vm, dev_id, "surprise-remove", qm, am, t0, bdf, disk, timeout)
    return r


def surprise_qmp(vm, port, dev_id, bdf=None, disk=None, timeout=60):
    """removal=surprise on PORT, then device_del."""
    vm.qmp.cmd("qom-set", path="/machine/peripheral/" + port,
               property="removal", value="surprise")
    qm, am = vm.qmp.mark(), vm.agent.mark()
    vm.step("device_del %s (removal=surprise)" % dev_id)
    t0 = now()
    reply, qmp_s = vm.qmp.send("device_del", id=dev_id)
    if "error" in reply:
        raise HarnessError("device_del failed: %s" % reply["error"]["desc"])
    r = _wait_removed(vm, dev_id, "surprise-remove", qm, am, t0, bdf, disk, timeout)
    vm.qmp.cmd("qom-set", path="/machine/peripheral/" + port,
               property="removal", value="orderly")
    return r


def wait_guest_event(vm, kind, name=None, timeout=30, since=0):
    return vm.agent.wait_event(kind, name, timeout, since)


def wait_port_empty(vm, port, timeout=30):
    """The port takes a new device (ACPI: once the guest ran _EJ0)."""
    return wait_for(lambda: vm.port_state(port)["state"] == "empty", timeout,
                    "port %s empty" % port, step=0.2)


# --------------------------------------------------------------------------
# any hot-pluggable PCI NVMe (no passthrough port needed): for comparisons
# with upstream's vfio-user-pci or an emulated nvme on a pcie-root-port


def device_add_until_disk(vm, dev_id, timeout=70, **props):
    """device_add PROPS (driver=..., bus=..., ...) with the guest agent's
    wait-disk armed first: the precise end point of a hot-add.  Returns
    (disk, t0, t1, qmp_s, qmp_mark, agent_mark): host times of the
    command sent and of the agent's OK (the new disk in the guest's
    sysfs), and the QMP reply time."""
    qm, am = vm.qmp.mark(), vm.agent.mark()
    wait = "wait-disk %d" % (timeout * 1000 - 10000)
    cid, _ = vm.agent.send(wait)
    vm.agent.wait_data(cid, wait, 30)       # armed: it is watching
    vm.step("device_add %s %s on %s" % (props.get("driver"), dev_id,
                                        props.get("bus")))
    t0 = now()
    reply, qmp_s = vm.qmp.send("device_add", id=dev_id, **props)
    if "error" in reply:
        vm.agent.wait_reply(cid, wait, timeout, check=False)
        raise HarnessError("device_add %s: %s"
                           % (dev_id, reply["error"]["desc"]))
    _, disk, _, t1 = vm.agent.wait_reply(cid, wait, timeout)
    return disk.strip(), t0, t1, qmp_s, qm, am


def hot_add_device(vm, dev_id, driver, timeout=90, **props):
    """device_add DRIVER with PROPS (bus=..., socket=..., drive=...); wait
    for the guest to show the PCI device, controller and disk.  No
    PASSTHRU_HOTPLUG event is waited for (there is none off a passthrough
    port).  Latencies from the moment the command was sent."""
    qm, am = vm.qmp.mark(), vm.agent.mark()
    vm.step("device_add %s %s on %s" % (driver, dev_id, props.get("bus")))
    t0 = now()
    reply, qmp_s = vm.qmp.send("device_add", driver=driver, id=dev_id, **props)
    if "error" in reply:
        raise HarnessError("device_add failed: %s" % reply["error"]["desc"])
    r = _guest_device_added(vm, t0, am, timeout)
    r.update({"qmp_reply_ms": round(qmp_s * 1000), "qmp_mark": qm})
    return r


def remove_device(vm, dev_id, bdf=None, disk=None, timeout=60):
    """device_del; wait for DEVICE_DELETED and for the guest to drop the
    disk and the PCI device."""
    qm, am = vm.qmp.mark(), vm.agent.mark()
    vm.step("device_del %s" % dev_id)
    t0 = now()
    reply, qmp_s = vm.qmp.send("device_del", id=dev_id)
    if "error" in reply:
        raise HarnessError("device_del failed: %s" % reply["error"]["desc"])
    td, _, _ = vm.qmp.wait_event(
        lambda e: e["event"] == "DEVICE_DELETED"
        and e.get("data", {}).get("device") == dev_id, timeout, qm,
        "DEVICE_DELETED %s" % dev_id)
    gblk = vm.agent.wait_event("blk-del", disk, timeout, since=am) if disk else None
    gpci = vm.agent.wait_event("pci-del", bdf, timeout, since=am) if bdf else None
    return {
        "qmp_reply_ms": round(qmp_s * 1000),
        "deleted_ms": round((td - t0) * 1000),
        "guest_disk_gone_s": _guest_lat(vm, t0, gblk),
        "guest_pci_gone_s": _guest_lat(vm, t0, gpci),
    }


# TAP output for the guest tests

_tap_count = 0


def tap(ok, desc, diag=()):
    """Print TAP result line N (counted here) and its diagnostics."""
    global _tap_count
    _tap_count += 1
    print("%s %d - %s" % ("ok" if ok else "not ok", _tap_count, desc))
    for line in diag:
        for text in str(line).splitlines():
            print("# " + text)
    sys.stdout.flush()


def note(text):
    print("# " + text)
    sys.stdout.flush()


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def run_tap_tests(run, prefix, tests, evidence):
    """Run run.t_<test>() for each of TESTS in order, as TAP points named
    PREFIX/test.  Each returns (description, diagnostics).  After a
    failure (with EVIDENCE(run) as diagnostics) the rest are reported as
    not run: they build on each other."""
    broken = None
    for t in tests:
        name = "%s/%s" % (prefix, t)
        if broken:
            tap(False, "%s: not run, %s failed" % (name, broken))
            continue
        t0 = time.monotonic()
        try:
            desc, ev = getattr(run, "t_" + t.replace("-", "_"))()
            tap(True, "%s: %s" % (name, desc),
                ev + ["took %.1f s" % (time.monotonic() - t0)])
        except (Fail, HarnessError, OSError, KeyError, ValueError,
                IndexError, TypeError) as e:
            tap(False, "%s: %s" % (name, e),
                evidence(run) +
                ([traceback.format_exc()] if not isinstance(
                    e, (Fail, HarnessError)) else []))
            broken = name


def tap_main(tests, run_mode, modes=("acpi", "native")):
    """The main of a guest test: the plan, the guest (cached build), then
    RUN_MODE(mode) for each mode given on the command line (default all)."""
    modes = sys.argv[1:] or list(modes)
    for mode in modes:
        if mode not in ("acpi", "native"):
            sys.exit("unknown mode %s" % mode)
    print("1..%d" % (len(tests) * len(modes)))
    t_all = time.monotonic()
    build = os.path.join(TOP, "scripts", "guest", "build-guest.sh")
    p = subprocess.run([build], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    for line in p.stdout.splitlines():
        note(line)
    if p.returncode != 0:
        for mode in modes:
            for t in tests:
                tap(False, "%s/%s: not run, build-guest.sh failed" % (mode, t))
        return
    for mode in modes:
        run_mode(mode)
    note("total %.1f s" % (time.monotonic() - t_all))
