#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""NVMe passthrough hotplug under a real libvirtd, through the monitor (TAP).

The example domain docs/config/nvme-passthru-hotplug.xml is defined and
started with the fork as its emulator, by Debian's libvirtd (11.3 from
bookworm-backports, or bookworm's 9.0), and driven with virsh and
build/tools/virt-nvme-hotplug: vfio-user NVMe devices, which libvirt
cannot express, go through libvirt's QEMU monitor passthrough (the
domain is then tainted "custom-monitor"); the guest (tests/guest/init)
reports what it sees.  How the example is adapted to these machines, and
the private libvirtd: libvirtd.py.  libvirt's own <hostdev> flow is
libvirt-hostdev-test.py.

Usage: tests/guest/libvirt-test.py (as root)
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402
import libvirtd as lv  # noqa: E402
from libvirtd import DOMAIN, TOOL, URI, FakeHost, sh, virsh  # noqa: E402

BLOCKER = "prevents migration and snapshots"

TESTS = [
    "start",
    "domxml-to-native",
    "status",
    "add",
    "not-in-dumpxml",
    "save-refused",
    "migrate-refused",
    "libvirt-placement",
    "orderly",
    "surprise-host-gone",
    "surprise-tool",
    "forced-removal",
    "refusals",
    "kernel-vfio",
    "add-never-completes",
]

tap, note, Fail, check = h.tap, h.note, h.Fail, h.check


def tool(*args, **kw):
    return sh([TOOL, "-c", URI, "--json"] + list(args), **kw)


def tool_json(*args, rc=0, **kw):
    code, out, err = tool(*args, **kw)
    if code != rc:
        raise Fail("virt-nvme-hotplug %s: exit %d, not %d: %s%s"
                   % (" ".join(args), code, rc, out, err))
    return json.loads(out.strip().splitlines()[-1])


class Run:
    def __init__(self):
        self.run = h.new_run_dir("libvirt")
        self.img = h.make_image(os.path.join(self.run, "nvme.img"), 128)
        self.libvirtd = lv.Libvirtd(self.run)
        self.servers = []
        self.agent = None
        self.bdf = self.disk = None

    def stop(self):
        if self.agent:
            self.agent.close()
        self.libvirtd.stop()
        for s in self.servers:
            s.stop()

    def evidence(self):
        return lv.evidence(self.run)

    def server(self, name):
        s = h.Server(self.run, self.img, name=name).start()
        self.servers.append(s)
        return s

    def qemu_log(self):
        return lv.qemu_log()

    def monitor_events(self, seconds):
        """virsh qemu-monitor-event for SECONDS, in the background."""
        return subprocess.Popen(
            ["virsh", "-c", URI, "qemu-monitor-event", DOMAIN, "--loop",
             "--timestamp", "--timeout", str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def guest_sees(self, dev_id, am, port):
        pci = self.agent.wait_event("pci-add", None, 60, since=am)
        nvme = self.agent.wait_event("nvme-add", "nvme*", 60, since=am)
        blk = self.agent.wait_event("blk-add", "nvme*", 60, since=am)
        _, _, lines, _ = self.agent.call("lspci")
        short = pci[3][5:]
        check([l for l in lines if l.startswith(short) and "0108" in l],
              "guest lspci has no NVMe at %s: %s" % (short, lines))
        return pci[3], blk[3], nvme[3]

    def guest_lost(self, am, timeout=30):
        self.agent.wait_event("blk-del", self.disk, timeout, since=am)
        self.agent.wait_event("pci-del", self.bdf, timeout, since=am)
        _, _, lines, _ = self.agent.call("lspci")
        check(not [l for l in lines if l.startswith(self.bdf[5:])],
              "guest lspci still lists %s" % self.bdf)

    def add(self, port, dev_id, server):
        am = self.agent.mark()
        r = tool_json(DOMAIN, "add", port, dev_id, "--socket", server.sock,
                      timeout=120)
        check(r["result"] == "completed" and r["port"] == port,
              "add: %s" % r)
        self.bdf, self.disk, ctrl = self.guest_sees(dev_id, am, port)
        return r, ctrl

    # ---- the tests ------------------------------------------------------

    def t_start(self):
        check(os.access(TOOL, os.X_OK), "no %s (make build)" % TOOL)
        ver = self.libvirtd.start()
        xml = lv.domain_xml(self.run)
        virsh("define", xml, check_rc=0)
        virsh("start", DOMAIN, check_rc=0)
        self.agent = h.Agent(os.path.join(self.run, "agent.sock"),
                             log=open(os.path.join(self.run, "agent.log"), "w"))
        t, up, kernel = self.agent.wait_ready(180)
        log = self.qemu_log()
        check("tainted: custom-device" in log,
              "no custom-device taint in the domain log")
        lib = re.search(r"Using library: libvirt (\S+)", ver)
        return ("libvirt %s started the example domain with the fork; guest "
                "up after %.1f s" % (lib.group(1) if lib else "?", up),
                ["kernel %s" % kernel, "taints: " + ", ".join(
                    sorted(set(re.findall(r"tainted: (\S+)", log))))])

    def t_domxml_to_native(self):
        _, argv, _ = virsh("domxml-to-native", "qemu-argv", "--domain", DOMAIN,
                           check_rc=0)
        devs = [json.loads(m) for m in
                re.findall(r"-device '(\{[^']*\})'", argv)]
        ports = {d["id"]: d for d in devs if d.get("bus") == "pcie.0"
                 and "port" in d}
        for pt in ("ua-pt1", "ua-pt2"):
            check(ports.get(pt, {}).get("driver") == "pcie-hotplug-passthru",
                  "%s is not pcie-hotplug-passthru: %s" % (pt, ports.get(pt)))
            check("hotplug" not in ports[pt],
                  "%s: libvirt sets hotplug: %s" % (pt, ports[pt]))
        plain = [p for p in ports.values() if p["driver"] == "pcie-root-port"]
        check(len(plain) == 3, "not three ordinary root ports: %s" % ports)
        on_pt = [d for d in devs if d.get("bus") in ("ua-pt1", "ua-pt2")]
        check(not on_pt, "libvirt placed devices on passthrough ports: %s"
              % on_pt)
        check("mem-lock=on" in argv, "no mem-lock=on in the command line")
        return ("the override turns ua-pt1/ua-pt2 into pcie-hotplug-passthru",
                [json.dumps(ports["ua-pt1"])])

    def t_status(self):
        r = tool_json(DOMAIN, "status")
        check(r["enabled"] and r["hotplug-mode"] == "acpi", "status: %s" % r)
        check([p["id"] for p in r["ports"]] == ["ua-pt1", "ua-pt2"] and
              all(p["state"] == "empty" for p in r["ports"]),
              "ports: %s" % r["ports"])
        return "status: two empty passthrough ports, ACPI", [json.dumps(r)]

    def t_add(self):
        self.srv = self.server("nvme-a")
        r, ctrl = self.add("ua-pt1", "nvme-a", self.srv)
        check("tainted: custom-monitor" in self.qemu_log(),
              "no custom-monitor taint")
        st = tool_json(DOMAIN, "status")
        p = st["ports"][0]
        check(p["state"] == "present" and p["device"] == "nvme-a" and
              p["transport"] == "vfio-user" and p["backend"] == self.srv.sock,
              "status after add: %s" % p)
        return ("hot-add through virt-nvme-hotplug: %s ms, guest has %s %s %s"
                % (r["latency-ms"], self.bdf, ctrl, self.disk), [json.dumps(r)])

    def t_not_in_dumpxml(self):
        _, xml, _ = virsh("dumpxml", DOMAIN, check_rc=0)
        check("nvme-a" not in xml, "dumpxml shows the monitor-added device")
        return "dumpxml does not show the device (libvirt does not know it)", []

    def t_save_refused(self):
        rc, out, err = virsh("save", DOMAIN, os.path.join(self.run, "save.img"))
        check(rc != 0 and BLOCKER in err and "nvme-a" in err,
              "virsh save: rc %d: %s%s" % (rc, out, err))
        _, state, _ = virsh("domstate", DOMAIN, check_rc=0)
        check(state.strip() == "running", "domain %s after save" % state)
        self.agent.call("ping")
        return "virsh save refused: " + err.strip().splitlines()[-1], []

    def t_migrate_refused(self):
        rc, out, err = virsh("migrate", "--live", DOMAIN,
                             "qemu+unix:///system?socket=/run/libvirt/libvirt-sock")
        check(rc != 0 and BLOCKER in err,
              "virsh migrate: rc %d: %s%s" % (rc, out, err))
        _, state, _ = virsh("domstate", DOMAIN, check_rc=0)
        check(state.strip() == "running", "domain %s after migrate" % state)
        return "virsh migrate refused: " + err.strip().splitlines()[-1], []

    def t_libvirt_placement(self):
        """libvirt does not know a monitor-added device: it places a disk on
        the port that holds one, and QEMU refuses it there."""
        disks = []
        for n in ("b", "c"):
            img = h.make_image(os.path.join(self.run, "vd%s.img" % n), 16)
            rc, out, err = virsh("attach-disk", DOMAIN, img, "vd" + n,
                                 "--targetbus", "virtio", "--live")
            disks.append((n, rc, (out + err).strip()))
        _, xml, _ = virsh("dumpxml", DOMAIN, check_rc=0)
        root = ET.fromstring(xml)
        buses = {}
        for d in root.find("devices").findall("disk"):
            addr = d.find("address")
            buses[d.find("target").get("dev")] = int(addr.get("bus"), 16)
        check(disks[0][1] == 0 and buses.get("vdb") == 3,
              "first disk: %s, buses %s" % (disks[0], buses))
        check(disks[1][1] != 0 and "vdc" not in buses and
              "pcie-hotplug-passthru port 'ua-pt1' accepts only vfio-pci, "
              "vfio-nvme and vfio-user-nvme devices, not 'virtio-blk-pci'"
              in disks[1][2],
              "second disk should be refused on ua-pt1: %s, buses %s"
              % (disks[1], buses))
        st = tool_json(DOMAIN, "status")
        check(st["ports"][0]["device"] == "nvme-a",
              "ua-pt1: %s" % st["ports"][0])
        virsh("detach-disk", DOMAIN, "vdb", "--live", check_rc=0, timeout=60)
        return ("attach-disk used the free ordinary port (bus 3); the next "
                "went to ua-pt1, whose NVMe libvirt does not know, and QEMU "
                "refused it", [disks[1][2].replace("\n", " | ")])

    def t_orderly(self):
        ev = self.monitor_events(20)
        time.sleep(0.5)
        am = self.agent.mark()
        r = tool_json(DOMAIN, "remove", "nvme-a")
        check(r["result"] == "completed" and r["cause"] == "qmp" and
              "deleted-ms" in r, "remove: %s" % r)
        self.guest_lost(am)
        ev.send_signal(signal.SIGINT)
        out = ev.communicate(timeout=30)[0]
        check(re.search(r'event PASSTHRU_HOTPLUG .*"device":"nvme-a".*'
                        r'"phase":"completed"', out) and
              re.search(r'"operation":"remove"', out) and
              re.search(r'event DEVICE_DELETED .*"nvme-a"', out),
              "virsh qemu-monitor-event showed: %s" % out)
        _, out, _ = virsh("qemu-monitor-command", DOMAIN,
                          '{"execute":"query-migrate"}', check_rc=0)
        check("nvme-a" not in out, "migration still blocked after the "
              "removal: %s" % out)
        return ("orderly removal: %s ms, gone in the guest; virsh "
                "qemu-monitor-event showed it" % r["latency-ms"],
                [l for l in out.splitlines() if "nvme-a" in l])

    def t_surprise_host_gone(self):
        srv = self.server("nvme-b")
        self.add("ua-pt2", "nvme-b", srv)
        ev = subprocess.Popen(
            ["virsh", "-c", URI, "qemu-monitor-event", DOMAIN, "--event",
             "PASSTHRU_HOTPLUG", "--loop", "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watch = subprocess.Popen([TOOL, "-c", URI, "--json", "-t", "30",
                                  DOMAIN, "watch"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        am = self.agent.mark()
        srv.kill()
        self.guest_lost(am)
        h.wait_for(lambda: tool_json(DOMAIN, "status")["ports"][1]["state"]
                   == "empty", 30, "ua-pt2 empty", step=0.5)
        ev.send_signal(signal.SIGINT)
        out = ev.communicate(timeout=30)[0]
        check(re.search(r'"device":"nvme-b".*', out) and
              re.search(r'"cause":"host-gone"', out) and
              re.search(r'"phase":"completed"', out),
              "no host-gone event in: %s" % out)
        watch.send_signal(signal.SIGINT)
        seen = [json.loads(l) for l in
                watch.communicate(timeout=30)[0].splitlines()
                if l.startswith("{")]
        check([e for e in seen if e["event"] == "PASSTHRU_HOTPLUG" and
               e["data"]["cause"] == "host-gone" and
               e["data"]["phase"] == "completed"] and
              [e for e in seen if e["event"] == "DEVICE_DELETED" and
               e["data"]["device"] == "nvme-b"],
              "virt-nvme-hotplug watch saw: %s" % seen)
        return ("kill -9 of the vfio-user server: cause host-gone in virsh "
                "qemu-monitor-event; gone in the guest",
                [l for l in out.splitlines() if "nvme-b" in l])

    def t_surprise_tool(self):
        srv = self.server("nvme-c")
        self.add("ua-pt1", "nvme-c", srv)
        am = self.agent.mark()
        r = tool_json(DOMAIN, "surprise-remove", "nvme-c")
        check(r["result"] == "completed" and r["operation"] ==
              "surprise-remove" and r["cause"] == "qmp", "%s" % r)
        self.guest_lost(am)
        st = tool_json(DOMAIN, "status")
        check(st["ports"][0]["state"] in ("empty", "removing"),
              "ua-pt1 after surprise: %s" % st["ports"][0])
        _, out, _ = virsh("qemu-monitor-command", DOMAIN,
                          '{"execute":"qom-get","arguments":{"path":'
                          '"/machine/peripheral/ua-pt1","property":"removal"}}',
                          check_rc=0)
        check('"return":"orderly"' in out,
              "the port's removal was not set back to orderly: %s" % out)
        return ("surprise-remove through the tool: %s ms, gone in the guest"
                % r["latency-ms"], [json.dumps(r)])

    def qom(self, cmd, port, prop, value=None):
        args = {"path": "/machine/peripheral/" + port, "property": prop}
        if value is not None:
            args["value"] = value
        _, out, _ = virsh("qemu-monitor-command", DOMAIN, json.dumps(
            {"execute": cmd, "arguments": args}), check_rc=0)
        return json.loads(out)["return"]

    def t_forced_removal(self):
        """An orderly removal the guest does not finish in time is forced:
        the tool reports it completed, ended as a surprise removal."""
        srv = self.server("nvme-d")
        self.add("ua-pt2", "nvme-d", srv)
        old = self.qom("qom-get", "ua-pt2", "unplug-timeout-ms")
        self.qom("qom-set", "ua-pt2", "unplug-timeout-ms", 1)
        try:
            am = self.agent.mark()
            r = tool_json(DOMAIN, "remove", "nvme-d")
        finally:
            self.qom("qom-set", "ua-pt2", "unplug-timeout-ms", old)
        check(r["result"] == "completed" and r["operation"] == "remove" and
              r.get("ended-as") == "surprise-remove" and
              r["cause"] == "timeout" and "deleted-ms" in r, "%s" % r)
        self.guest_lost(am)
        return ("an orderly removal past unplug-timeout-ms: completed, ended "
                "as surprise-remove, cause timeout", [json.dumps(r)])

    def t_refusals(self):
        out = []
        for args, want in (
                (("add", "ua-pt1", "hostdev0", "--socket", "/x"), "libvirt"),
                (("add", "ua-pt1", "ua-mine", "--socket", "/x"), "libvirt"),
                (("add", "pci.3", "nvme-x", "--socket", "/x"),
                 "not a passthrough port"),
                (("add", "ua-pt1", "nvme-x", "--socket",
                  os.path.join(self.run, "none.sock")), "no vfio-user server"),
                (("add", "ua-pt1", "nvme-x"), "exactly one of"),
                (("remove", "nvme-nothere"), "no passthrough device")):
            rc, o, e = tool(DOMAIN, *args)
            r = json.loads(o) if o.strip() else {}
            check(rc == 2 and r.get("result") == "refused" and
                  want in r.get("reason", ""),
                  "%s: rc %d %s%s" % (" ".join(args), rc, o, e))
            out.append("%s -> %s" % (" ".join(args), r["reason"]))
        rc, o, e = sh([TOOL, "-c", URI, "no-such-domain", "status"])
        check(rc != 0 and "no-such-domain" in e, "unknown domain: %s" % e)
        # QEMU's admission query, before device_add: every reason, with
        # its code; --no-admission leaves it to device_add, which says
        # the same.  QEMU only checks that the socket is one.
        path = os.path.join(self.run, "admission.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        want = ("bad-id: vfio-user-nvme: id 'nvme x' is not well formed: "
                "it must begin with a letter and contain only letters, "
                "digits, '-', '.' and '_'")
        rc, o, e = tool(DOMAIN, "add", "ua-pt1", "nvme x", "--socket", path)
        r = json.loads(o) if o.strip() else {}
        check(rc == 2 and r.get("reason") == want and
              [x["code"] for x in r.get("refusals", [])] == ["bad-id"],
              "admission: rc %d %s%s" % (rc, o, e))
        out.append("add ua-pt1 'nvme x' -> %s" % r["reason"])
        rc, o, e = tool(DOMAIN, "--no-admission", "add", "ua-pt1", "nvme x",
                        "--socket", path)
        r = json.loads(o) if o.strip() else {}
        lsock.close()
        check(rc == 1 and r.get("reason") == want.split(": ", 1)[1],
              "--no-admission: rc %d %s%s" % (rc, o, e))
        out.append("--no-admission: device_add -> %s" % r["reason"])
        return ("bad arguments are refused with exit 2 and a reason; QEMU's "
                "admission refusals too, with their codes", out)

    def t_kernel_vfio(self):
        """virt-nvme-hotplug --host: the host module's refusals, word for
        word, on synthetic hosts (tests/host/faketree.py); then an idle
        NVMe alone in its IOMMU group goes to libvirt as a <hostdev>, and
        libvirt's refusal on this host without an IOMMU reaches the user
        (exit 1)."""
        bdf = "0000:3b:00.0"
        used = "%s is in use by the host: " % bdf
        sysfsdev = "/sys/bus/pci/devices/%s/" % bdf
        # What each host does besides having the NVMe BDF (nvme0n1 with a
        # partition nvme0n1p1, and nvme0n2), alone in IOMMU group 1.  On
        # the idle hosts the tool's own refusals and libvirt's are matched
        # in part; every other reason is the host module's, word for word.
        idle = ("idle", "on-vfio")
        hosts = {
            "idle": lambda t, n2: None,
            # already given to vfio-pci: the host has no controller on it
            "on-vfio": lambda t, n2: t.bind(bdf, "vfio-pci"),
            "absent": lambda t, n2: None,
            "not-nvme": lambda t, n2: t.write(
                "sys/bus/pci/devices/%s/class" % bdf, "0x010601\n"),
            "no-iommu": None,
            "shared-group": lambda t, n2: t.pci(
                "0000:3b:00.1", cls=0x0c0330, driver="xhci_hcd", group=1),
            "mounted": lambda t, n2: t.mount("259:8", "/dev/nvme0n1p1",
                                             "/srv"),
            "swap": lambda t, n2: t.swap("/dev/nvme0n1"),
            "lvm": lambda t, n2: t.holder(n2, "dm-0", "254:0",
                                          dm_name="vg0-data",
                                          dm_uuid="LVM-Kq3tHw"),
            "open": lambda t, n2: t.process(4242, "dd",
                                            fds=["/dev/nvme0n2"]),
        }
        steps = []
        for name, args, rc_want, want in (
                ("absent", ("ua-pt1", "ua-k", "--host", "0000:3c:00.0"), 2,
                 "no PCI device 0000:3c:00.0 on this host"),
                ("not-nvme", ("ua-pt1", "ua-k", "--host", "3b:00.0"), 2,
                 "%s is not an NVMe controller: class 0x010601, not "
                 "0x010802" % bdf),
                ("idle", ("ua-pt1", "nvme-k", "--host", bdf), 2,
                 "begin with 'ua-'"),
                ("idle", ("pci.3", "ua-k", "--host", bdf), 2,
                 "not a passthrough port"),
                ("no-iommu", ("ua-pt1", "ua-k", "--host", bdf), 2,
                 "%s has no IOMMU group: the host runs without an IOMMU "
                 "(see 'nvme-passthru-host check')" % bdf),
                ("shared-group", ("ua-pt1", "ua-k", "--host", bdf), 2,
                 "IOMMU group 1 of %s is not viable: it also holds "
                 "0000:3b:00.1, bound to the host driver xhci_hcd" % bdf),
                ("mounted", ("ua-pt2", "ua-k", "--host", bdf), 2,
                 used + "/dev/nvme0n1p1 is mounted on /srv"),
                ("swap", ("ua-pt2", "ua-k", "--sysfsdev", sysfsdev), 2,
                 used + "/dev/nvme0n1 is in use as swap"),
                ("lvm", ("ua-pt2", "ua-k", "--host", bdf), 2,
                 used + "nvme0n2 is held by dm-0 (LVM vg0-data)"),
                ("open", ("ua-pt2", "ua-k", "--host", bdf), 2,
                 used + "/dev/nvme0n2 is open in process 4242 (dd)"),
                ("on-vfio", ("ua-pt2", "ua-k", "--host", bdf), 1,
                 "libvirt could not add 0000:3b:00.0 as a <hostdev>: "),
                ("idle", ("ua-pt2", "ua-k", "--host", bdf), 1,
                 "libvirt could not add 0000:3b:00.0 as a <hostdev>: "
                 "unsupported configuration: host doesn't support "
                 "passthrough of host PCI devices (the host runs without "
                 "an IOMMU")):
            t = FakeHost(os.path.join(self.run, "host%d" % len(steps)))
            n1, n2 = t.nvme(bdf, group=1 if hosts[name] else None,
                            namespaces=2)
            t.partition(n1, "nvme0n1p1", "259:8")
            if hosts[name]:
                hosts[name](t, n2)
            env = dict(os.environ, VIRT_NVME_HOTPLUG_ROOT=t.root)
            rc, o, e = sh([TOOL, "-c", URI, "--json", DOMAIN, "add"] +
                          list(args), env=env)
            r = json.loads(o) if o.strip() else {"reason": e}
            reason = r.get("reason", "")
            check(rc == rc_want and (reason == want or
                                     (name in idle and want in reason)),
                  "%s: exit %d (want %d): %s" % (name, rc, rc_want, r))
            steps.append("%s: add %s %s -> exit %d: %s" % (
                name, args[0], args[1], rc, reason))
        check(r["result"] == "failed", "not failed: %s" % r)
        _, xml, _ = virsh("dumpxml", DOMAIN, check_rc=0)
        check("<hostdev" not in xml, "a hostdev stayed in the live XML")
        st = tool_json(DOMAIN, "status")
        check(st["ports"][1]["state"] == "empty",
              "ua-pt2 after the failed add: %s" % st["ports"][1])
        return ("kernel VFIO: refused with the host module's reasons (no "
                "device, not NVMe, no or shared IOMMU group, mounted, swap, "
                "held, open); an idle NVMe, or one already on vfio-pci, goes "
                "to libvirt as a <hostdev>, whose refusal without an IOMMU "
                "reaches the user (exit 1)", steps)

    def t_add_never_completes(self):
        """A guest without an NVMe driver never completes an add: the port
        fails it after add-timeout-ms, and device_del (the tool's remove)
        cancels it at once."""
        # The same domain, its guest kernel refusing to load nvme
        virsh("destroy", DOMAIN, check_rc=0, timeout=60)
        virsh("undefine", DOMAIN, "--nvram", check_rc=0, timeout=60)
        self.agent.close()
        xml = lv.domain_xml(self.run, append="module_blacklist=nvme")
        virsh("define", xml, check_rc=0)
        virsh("start", DOMAIN, check_rc=0)
        self.agent = h.Agent(os.path.join(self.run, "agent.sock"),
                             log=open(os.path.join(self.run, "agent2.log"),
                                      "w"))
        self.agent.wait_ready(180)
        out = []
        # Cancelled: the tool stops waiting; its remove is device_del
        srv = self.server("nvme-e")
        rc, o, e = tool("-t", "3", DOMAIN, "add", "ua-pt1", "nvme-e",
                        "--socket", srv.sock)
        r = json.loads(o) if o.strip() else {}
        check(rc == 1 and r.get("result") == "failed" and
              "within the timeout" in r.get("reason", ""),
              "add without a guest driver: exit %d: %s%s" % (rc, o, e))
        st = tool_json(DOMAIN, "status")
        check(st["ports"][0]["state"] == "adding",
              "ua-pt1 while the add waits: %s" % st["ports"][0])
        out.append("add, tool timeout 3 s: " + json.dumps(r))
        r = tool_json(DOMAIN, "remove", "nvme-e")
        check(r["result"] == "completed" and
              r.get("ended-as") == "surprise-remove" and r["cause"] == "qmp"
              and "deleted-ms" in r, "remove of the pending add: %s" % r)
        out.append("remove: " + json.dumps(r))
        # Timed out by the port
        srv = self.server("nvme-f")
        self.qom("qom-set", "ua-pt2", "add-timeout-ms", 2000)
        rc, o, e = tool(DOMAIN, "add", "ua-pt2", "nvme-f", "--socket",
                        srv.sock)
        r = json.loads(o) if o.strip() else {}
        check(rc == 1 and r.get("result") == "failed" and
              r.get("cause") == "timeout" and "deleted-ms" in r and
              "did not enable the device within 2000 ms" in r.get("reason",
                                                                   ""),
              "add past add-timeout-ms: exit %d: %s%s" % (rc, o, e))
        out.append("add-timeout-ms 2000: " + json.dumps(r))
        st = tool_json(DOMAIN, "status")
        check(all(p["state"] == "empty" for p in st["ports"]),
              "ports afterwards: %s" % st["ports"])
        return ("an add the guest never completes: cancelled by the tool's "
                "remove (device_del), failed by add-timeout-ms (exit 1)", out)


def main():
    if not lv.in_private_namespace(TESTS):
        return

    def run_mode(mode):
        run = Run()
        try:
            h.run_tap_tests(run, "libvirt", TESTS, Run.evidence)
        finally:
            run.stop()

    h.tap_main(TESTS, run_mode, modes=("acpi",))


if __name__ == "__main__":
    main()
