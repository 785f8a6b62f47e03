# SPDX-License-Identifier: GPL-2.0-or-later
"""A private libvirtd for the libvirt tests, and the example domain.

libvirtd and virtlogd run in a private mount namespace (the test
re-executes itself under unshare -m, see in_private_namespace) with their
own /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
/var/cache/libvirt bound from the run folder: nothing of the host's
libvirt is touched, and nothing is left running.

domain_xml() turns the example domain docs/config/nvme-passthru-hotplug.xml
into one that runs here: type 'qemu' (TCG), the test kernel and
initrd, the agent's serial port, a small raw image as its disk, and
-overcommit mem-lock=on through <qemu:commandline> instead of <locked/>,
because libvirt cannot raise RLIMIT_MEMLOCK on these machines (no
CAP_SYS_RESOURCE) while QEMU, running as root, locks its memory itself.
That <qemu:commandline> taints the test domain "custom-argv" (and
user = "root" in qemu.conf "high-privileges"); the example itself has
only the override's "custom-device".
"""

import os
import resource
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import harness as h

# virt-nvme-hotplug's host checks read a synthetic host
# (VIRT_NVME_HOTPLUG_ROOT): tests/host's, FakeHost(folder)
sys.path.insert(0, os.path.join(h.TOP, "tests", "host"))
from faketree import Tree as FakeHost  # noqa: E402,F401

EXAMPLE = os.path.join(h.TOP, "docs", "config", "nvme-passthru-hotplug.xml")
HOSTDEV_EXAMPLE = os.path.join(h.TOP, "docs", "config",
                               "nvme-passthru-hostdev.xml")
TOOL = os.path.join(h.BUILD, "tools", "virt-nvme-hotplug")
QNS = "http://libvirt.org/schemas/domain/qemu/1.0"
DOMAIN = "nvme-passthru"
URI = "qemu:///system"
PRIVATE = {"etc": "/etc/libvirt", "run": "/run/libvirt",
           "lib": "/var/lib/libvirt", "log": "/var/log/libvirt",
           "cache": "/var/cache/libvirt"}
# The taint of the test's own <qemu:commandline> (see above)
TEST_TAINTS = {"custom-argv"}
# Where a hot-added PCI <hostdev> stops on these machines, without
# CAP_SYS_RESOURCE (can_raise_memlock()): before libvirt touches the host
# device or QEMU
MEMLOCK = "cannot limit locked memory of process"
# libvirt's refusals on a port with hotplug='off'
HOTPLUG_OFF = ("requires hotplug capability", "not allowed by controller",
               "doesn't support hotplug")


def sh(cmd, check_rc=None, timeout=120, env=None):
    """Run CMD: (rc, stdout, stderr)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, env=env)
    if check_rc is not None and p.returncode != check_rc:
        raise h.HarnessError("%s: exit %d, %s%s" % (
            " ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.returncode, p.stdout, p.stderr


def virsh(*args, **kw):
    return sh(["virsh", "-c", URI] + list(args), **kw)


def can_raise_memlock():
    """May this process raise another's RLIMIT_MEMLOCK (libvirt does)?"""
    probe = subprocess.Popen(["sleep", "30"])
    try:
        resource.prlimit(probe.pid, resource.RLIMIT_MEMLOCK,
                         (2 << 30, 2 << 30))
        return True
    except OSError:
        return False
    finally:
        probe.kill()
        probe.wait()


def in_private_namespace(tests):
    """Re-execute this test in a private mount namespace (once).  False,
    with every test reported failed, when that is not possible."""
    if os.geteuid() != 0:
        print("1..%d" % len(tests))
        for t in tests:
            h.tap(False, "%s: not run, the libvirt tests run as root" % t)
        return False
    if os.environ.get("LIBVIRT_TEST_NS") == "1":
        return True
    env = dict(os.environ, LIBVIRT_TEST_NS="1")
    try:
        os.execvpe("unshare", ["unshare", "--mount", "--propagation",
                               "private", sys.executable,
                               os.path.abspath(sys.argv[0])] + sys.argv[1:],
                   env)
    except OSError as e:
        print("1..%d" % len(tests))
        for t in tests:
            h.tap(False, "%s: not run, unshare: %s" % (t, e))
    return False


def bind(src, target):
    sh(["mount", "--bind", src, target], check_rc=0)


def fake_iommu(run):
    """What libvirt looks at to allow a PCI <hostdev> on a host, faked in
    this mount namespace under RUN/fake (before the daemons start):
    /sys/kernel/iommu_groups with one empty group, 17, and /dev/vfio/vfio
    as an empty file in an overlay over the host's /dev, which is not
    changed.  No host device is faked."""
    fake = os.path.join(run, "fake")
    os.makedirs(fake)
    sh(["mount", "-t", "tmpfs", "fake", fake], check_rc=0)
    groups = os.path.join(fake, "iommu_groups")
    os.makedirs(os.path.join(groups, "17", "devices"))
    bind(groups, "/sys/kernel/iommu_groups")
    # /dev: an overlay over a recursive bind of the host's /dev (its
    # submounts, /dev/pts and /dev/shm, bound back on top)
    lower = os.path.join(fake, "dev")
    for d in ("dev", "upper", "work"):
        os.makedirs(os.path.join(fake, d))
    sh(["mount", "--rbind", "/dev", lower], check_rc=0)
    sh(["mount", "-t", "overlay", "fakedev", "-o",
        "lowerdir=%s,upperdir=%s/upper,workdir=%s/work"
        % (lower, fake, fake), "/dev"], check_rc=0)
    for m in ("pts", "shm", "mqueue", "hugepages"):
        if os.path.ismount(os.path.join(lower, m)):
            bind(os.path.join(lower, m), "/dev/" + m)
    os.makedirs("/dev/vfio", exist_ok=True)
    open("/dev/vfio/vfio", "w").close()


class Libvirtd:
    """libvirtd and virtlogd with private state under RUN/libvirt."""

    def __init__(self, run):
        self.run = run
        self.daemons = []

    def start(self, before_daemons=None):
        root = os.path.join(self.run, "libvirt")
        for name, target in PRIVATE.items():
            src = os.path.join(root, name)
            if name == "etc":
                shutil.copytree(target, src, symlinks=True)
            else:
                os.makedirs(src)
            os.makedirs(target, exist_ok=True)
            bind(src, target)
        with open("/etc/libvirt/qemu.conf", "a") as f:
            f.write('\n# tests/guest/libvirtd.py\nuser = "root"\n'
                    'group = "root"\nsecurity_driver = "none"\n'
                    'namespaces = [ ]\nremember_owner = 0\n')
        if before_daemons:
            before_daemons()
        for d in ("virtlogd", "libvirtd"):
            pidfile = "/run/libvirt/%s.pid" % d
            sh([d, "-d", "-p", pidfile], check_rc=0)
            self.daemons.append(pidfile)
        h.wait_for(lambda: os.path.exists("/run/libvirt/libvirt-sock"), 30,
                   "libvirtd socket")
        _, ver, _ = virsh("version", check_rc=0)
        return ver

    def stop(self):
        virsh("destroy", DOMAIN, timeout=60)
        virsh("undefine", DOMAIN, "--nvram", timeout=60)
        for pidfile in reversed(self.daemons):
            try:
                with open(pidfile) as f:
                    pid = int(f.read())
                os.kill(pid, signal.SIGTERM)
                h.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                           open("/proc/%d/stat" % pid).read().split()[2] == "Z",
                           15, "%s to stop" % pidfile)
            except (OSError, ValueError, h.HarnessError):
                pass
        self.daemons = []


def lock_by_qemu(d, args=()):
    """Domain D (an Element) locks its memory with QEMU's -overcommit
    mem-lock=on instead of <locked/>, which libvirt cannot do here (see
    the module's comment); ARGS: more of QEMU's arguments.  Taints the
    domain custom-argv."""
    mb = d.find("memoryBacking")
    mb.remove(mb.find("locked"))
    cl = ET.SubElement(d, "{%s}commandline" % QNS)
    for a in ["-overcommit", "mem-lock=on"] + list(args):
        ET.SubElement(cl, "{%s}arg" % QNS, value=a)


def domain_xml(run, mode="acpi", path=None, extra_devices=(), append=""):
    """The example domain, changed only where this machine needs it (see
    the module's comment).  MODE 'native' turns ACPI PCI hotplug off with
    one more -global.  EXTRA_DEVICES: XML strings added to <devices>;
    APPEND: more of the guest kernel's command line."""
    ET.register_namespace("qemu", QNS)
    tree = ET.parse(EXAMPLE)
    d = tree.getroot()
    d.set("type", "qemu")
    d.find("memory").text = "512"
    d.find("vcpu").text = "2"
    os_el = d.find("os")
    os_el.remove(os_el.find("boot"))
    for tag, text in (("kernel", os.path.join(h.GUEST, "vmlinuz")),
                      ("initrd", os.path.join(h.GUEST, "initrd.img")),
                      ("cmdline", "console=ttyS0 panic=-1 loglevel=8 "
                       'dyndbg="module acpiphp +p" ' + append)):
        ET.SubElement(os_el, tag).text = text
    dev = d.find("devices")
    dev.find("emulator").text = h.qemu_binary()
    # The example's disk (on ordinary port 1), a small raw image here
    disk = dev.find("disk")
    disk.find("driver").set("type", "raw")
    disk.find("source").set("file", h.make_image(os.path.join(run, "vda.img"),
                                                 8))
    dev.remove(dev.find("console"))
    for s in dev.findall("serial"):
        dev.remove(s)
    s = ET.SubElement(dev, "serial", type="file")
    ET.SubElement(s, "source", path=os.path.join(run, "console.log"))
    ET.SubElement(s, "target", port="0")
    s = ET.SubElement(dev, "serial", type="unix")
    ET.SubElement(s, "source", mode="bind", path=os.path.join(run, "agent.sock"))
    ET.SubElement(s, "target", port="1")
    for x in extra_devices:
        dev.append(ET.fromstring(x))
    lock_by_qemu(d, ["-global",
                     "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
                 if mode == "native" else [])
    path = path or os.path.join(run, DOMAIN + ".xml")
    tree.write(path)
    return path


def qemu_log():
    with open("/var/log/libvirt/qemu/%s.log" % DOMAIN) as f:
        return f.read()


def evidence(run):
    out = []
    for f in ("/var/log/libvirt/qemu/%s.log" % DOMAIN,
              os.path.join(run, "console.log")):
        try:
            with open(f) as fh:
                out.append("%s: ...%s" % (f, " | ".join(
                    fh.read().splitlines()[-6:])))
        except OSError:
            pass
    out.append("run folder: %s" % run)
    return out
