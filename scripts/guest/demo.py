#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make demo: NVMe passthrough hotplug in a real UEFI Linux guest.

A "host NVMe" (a vfio-user server on a raw image) is hot-added into a
running OVMF guest, used, removed in order, checked from the host side,
added again and then pulled away under guest I/O.  Prints each step, what
the guest itself sees, and a timeline with latencies; full logs go to a
run folder under build/guest/.

Usage: scripts/guest/demo.py [--mode acpi|native] [--no-io]
"""

import argparse
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "guest"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402

PATTERN = "nvme-passthru-hotplug-demo"
OFFSET_MIB = 8

steps = 0


def step(title):
    global steps
    steps += 1
    print("\n== %d. %s" % (steps, title), flush=True)


def say(text):
    print("   " + text, flush=True)


def guest_lspci_nvme(vm):
    # an lspci that fails in the guest is an error of the agent's call
    _, _, lines, _ = vm.agent.call("lspci")
    return [l for l in lines if "Non-Volatile" in l or "[0108]" in l]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("acpi", "native"), default="acpi")
    ap.add_argument("--no-io", action="store_true",
                    help="no guest I/O while the server is killed")
    args = ap.parse_args()

    t_begin = time.monotonic()
    run = h.new_run_dir("demo")
    print("NVMe passthrough hotplug demo (%s hotplug, TCG, OVMF)" % args.mode)
    print("logs: %s" % run)
    vm = None
    servers = []
    rows = []       # (step, host side, guest side)
    try:
        step("Host NVMe: a vfio-user NVMe server on a 256 MiB image")
        img = h.make_image(os.path.join(run, "nvme.img"), 256)
        srv = h.Server(run, img, serial="demo0001").start()
        servers.append(srv)
        say("image  %s" % img)
        say("socket %s (server pid %d)" % (srv.sock, srv.proc.pid))

        step("Boot the UEFI guest (OVMF, Linux 6.1, one passthrough port)")
        vm = h.VM(run, ports=1, mode=args.mode).start(boot_timeout=180)
        q = vm.query()
        say("guest ready after %.1f s wall (%.2f s guest time), kernel %s"
            % (vm.boot_wall, vm.boot_guest, vm.kernel))
        say("query-passthru-hotplug: mode %s, ports %s"
            % (q["hotplug-mode"],
               ", ".join("%s=%s" % (p["id"], p["state"]) for p in q["ports"])))
        rows.append(("boot", "%.1f s wall" % vm.boot_wall,
                     "agent up at %.2f s" % vm.boot_guest))

        step("Hot-add the NVMe on port rp1 (device_add vfio-user-nvme)")
        a = h.hot_add(vm, "rp1", srv)
        say("QMP: device_add returned in %d ms, add completed after %d ms"
            % (a["qmp_reply_ms"], a["completed_ms"]))
        say("guest: PCI %s [%s] +%.2f s, %s +%.2f s, %s +%.2f s"
            % (a["bdf"], a["ids"], a["guest_pci_s"], a["ctrl"], a["guest_nvme_s"],
               a["disk"], a["guest_disk_s"]))
        listed = guest_lspci_nvme(vm)
        if not listed:
            raise h.HarnessError("guest lspci lists no NVMe controller after "
                                 "the hot-add of %s" % a["bdf"])
        for l in listed:
            say("guest lspci: " + l)
        rows.append(("hot-add", "completed %d ms" % a["completed_ms"],
                     "PCI +%.2f s, %s +%.2f s" % (a["guest_pci_s"], a["disk"],
                                                 a["guest_disk_s"])))

        step("Guest writes a known pattern at %d MiB and syncs" % OFFSET_MIB)
        _, text, _, secs = vm.agent.call("write %s %d %s" % (a["disk"], OFFSET_MIB,
                                                             PATTERN), timeout=60)
        vm.agent.call("sync")
        guest_md5 = text.split("=", 1)[1]
        say("guest: wrote 1 MiB of '%s' to /dev/%s in %.2f s, md5 %s"
            % (PATTERN, a["disk"], secs, guest_md5))

        step("Orderly removal (device_del): the guest releases the device")
        r = h.remove_orderly(vm, "nvme0", a["bdf"], a["disk"])
        say("QMP: remove completed after %d ms (cause %s), DEVICE_DELETED after %d ms"
            % (r["completed_ms"], r["cause"], r["deleted_ms"]))
        say("guest: %s gone +%.2f s, PCI %s gone +%.2f s"
            % (a["disk"], r["guest_disk_gone_s"], a["bdf"], r["guest_pci_gone_s"]))
        rows.append(("orderly removal", "completed %d ms" % r["completed_ms"],
                     "disk gone +%.2f s, PCI gone +%.2f s"
                     % (r["guest_disk_gone_s"], r["guest_pci_gone_s"])))

        step("Host side: the pattern is on the backing image")
        host_md5 = h.image_md5(img, OFFSET_MIB)
        want = hashlib.md5(h.pattern_bytes(PATTERN)).hexdigest()
        ok = host_md5 == guest_md5 == want
        say("image md5 at %d MiB: %s -> %s" % (OFFSET_MIB, host_md5,
                                               "matches" if ok else "MISMATCH"))
        if not ok:
            raise h.HarnessError("data written by the guest is not on the image "
                                 "(guest %s, image %s, expected %s)"
                                 % (guest_md5, host_md5, want))

        step("Hot-add again: a fresh server on the same image")
        srv2 = h.Server(run, img, serial="demo0001").start()
        servers.append(srv2)
        a2 = h.hot_add(vm, "rp1", srv2)
        _, text, _, _ = vm.agent.call("read %s %d 1" % (a2["disk"], OFFSET_MIB),
                                      timeout=60)
        say("QMP: add completed after %d ms; guest: %s +%.2f s"
            % (a2["completed_ms"], a2["disk"], a2["guest_disk_s"]))
        say("guest reads the pattern back: %s (%s)"
            % (text, "matches" if text == "md5=" + want else "MISMATCH"))
        rows.append(("hot-add again", "completed %d ms" % a2["completed_ms"],
                     "%s +%.2f s" % (a2["disk"], a2["guest_disk_s"])))

        step("Surprise removal: kill -9 the server%s"
             % ("" if args.no_io else " while the guest does I/O"))
        if not args.no_io:
            vm.agent.call("io-start %s" % a2["disk"])
            time.sleep(1.5)
            _, text, _, _ = vm.agent.call("io-status")
            say("guest I/O loop: %s" % text)
        am = vm.agent.mark()
        t_kill = time.monotonic()
        s = h.surprise_kill(vm, srv2, "nvme0", a2["bdf"], a2["disk"])
        say("QMP: surprise-remove completed after %d ms (cause %s: %s)"
            % (s["completed_ms"], s["cause"], s["reason"]))
        if not args.no_io:
            io = vm.agent.wait_event("io-error", a2["disk"], 30, since=am)
            io_lat = io[1] - vm.guest_time(t_kill)
            say("guest: I/O failed +%.2f s (%s)" % (io_lat, io[4]))
            io_text = "I/O error +%.2f s, " % io_lat
        else:
            st, text, _, _ = vm.agent.call("read %s 0 1" % a2["disk"], check=False)
            say("guest: read of /dev/%s now: %s %s" % (a2["disk"], st, text))
            io_text = ""
        say("guest: %s gone +%.2f s, PCI %s gone +%.2f s"
            % (a2["disk"], s["guest_disk_gone_s"], a2["bdf"], s["guest_pci_gone_s"]))
        rows.append(("surprise removal", "completed %d ms" % s["completed_ms"],
                     "%sPCI gone +%.2f s" % (io_text, s["guest_pci_gone_s"])))

        step("The guest survived")
        _, text, _, secs = vm.agent.call("ping")
        say("agent answers (%s, %.0f ms round trip)" % (text, secs * 1000))
        left = guest_lspci_nvme(vm)
        say("guest lspci: %s" % ("no NVMe controller left" if not left
                                 else "STILL LISTS " + "; ".join(left)))
        _, _, lines, _ = vm.agent.call("dmesg-grep 'nvme|acpiphp|pciehp: Slot'")
        for l in lines[-4:]:
            say("guest dmesg: " + l)
        q = vm.query()
        say("query-passthru-hotplug: %s"
            % ", ".join("%s=%s" % (p["id"], p["state"]) for p in q["ports"]))
        if left:
            raise h.HarnessError("the guest still lists the device")

        print("\n== Latencies (host: QMP events; guest: its own clock, from the"
              " QMP command)")
        for name, host, guest in rows:
            print("   %-18s %-22s %s" % (name, host, guest))

        print("\n== Timeline (host seconds since the VM started; guest uptime)")
        print(timeline(vm))
        print("\nDemo finished in %.0f s; logs: %s" % (time.monotonic() - t_begin, run))
        return 0
    except (h.HarnessError, OSError, KeyError, ValueError) as e:
        print("\nDEMO FAILED: %s" % e)
        if vm is not None:
            if vm.proc is not None:
                try:
                    vm.proc.wait(3)
                except Exception:
                    pass
                if vm.proc.poll() is not None:
                    print("   the VM's QEMU exited (status %s)" % vm.proc.returncode)
            print("   QEMU log tail: %s" % vm.tail_log(3))
        print("logs: %s" % run)
        return 1
    finally:
        if vm is not None:
            vm.shutdown()
        for s in servers:
            s.stop()


def timeline(vm):
    rows = []
    t0 = vm.t_start
    for t, ev in vm.qmp.events:
        d = ev.get("data", {})
        if ev["event"] == "PASSTHRU_HOTPLUG":
            text = "QMP   %s %s %s %s" % (d.get("device"), d.get("operation"),
                                          d.get("phase"), d.get("cause"))
            if "duration-ms" in d:
                text += " (%d ms)" % d["duration-ms"]
        elif ev["event"] == "DEVICE_DELETED":
            text = "QMP   DEVICE_DELETED %s" % d.get("device")
        else:
            continue
        rows.append((t - t0, None, text))
    for t, text in vm.steps:
        rows.append((t - t0, None, "HOST  " + text))
    for t, up, kind, name, extra in vm.agent.events:
        rows.append((t - t0, up, "guest %s %s %s" % (kind, name, extra[:50])))
    rows.sort(key=lambda r: r[0])
    return "\n".join("   %7.2f s  %-9s %s" % (t, "[%.2f]" % up if up is not None
                                               else "", text)
                     for t, up, text in rows)


if __name__ == "__main__":
    sys.exit(main())
