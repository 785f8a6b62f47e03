# SPDX-License-Identifier: GPL-2.0-or-later
"""A QMP server on a unix socket that answers like the fork's QEMU does
for watch: query-passthru-hotplug, device_add on a passthrough port and
the PASSTHRU_HOTPLUG events that follow.  It records every command.

mode "complete": add started, then completed; "fail": add started, then
failed (guest timeout) and DEVICE_DELETED; "error": device_add returns
an error; "silent": no event after device_add.

query-passthru-hotplug-admission answers admissible, or with the
refusals given ([(code, message), ...]); admission=False plays a QEMU
that predates the command (CommandNotFound).
"""

import json
import os
import socket
import threading


class FakeQmp:
    def __init__(self, path, ports, mode="complete", refusals=(),
                 admission=True):
        self.path = path
        self.ports = ports          # [{"id": "rp1", "state": "empty"}, ...]
        self.mode = mode
        self.refusals = refusals
        self.admission = admission
        self.commands = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.client, args=(conn,),
                             daemon=True).start()

    def send(self, f, obj):
        f.write(json.dumps(obj) + "\r\n")
        f.flush()

    def event(self, f, name, data):
        self.send(f, {"event": name, "data": data,
                      "timestamp": {"seconds": 1, "microseconds": 0}})

    def client(self, conn):
        try:
            self.talk(conn)
        except (ConnectionError, BrokenPipeError):
            pass            # the command went away: fine
        conn.close()

    def talk(self, conn):
        f = conn.makefile("rw")
        self.send(f, {"QMP": {"version": {}, "capabilities": []}})
        for line in f:
            cmd = json.loads(line)
            self.commands.append(cmd)
            name, args = cmd["execute"], cmd.get("arguments", {})
            if name == "qmp_capabilities":
                self.send(f, {"return": {}})
            elif name == "query-passthru-hotplug":
                self.send(f, {"return": {
                    "enabled": True, "hotplug-mode": "acpi",
                    "max-devices": 32, "max-vcpus": 128,
                    "ports": [dict(p, chassis=i + 1, slot=0)
                              for i, p in enumerate(self.ports)]}})
            elif (name == "query-passthru-hotplug-admission" and
                  self.admission):
                self.send(f, {"return": {
                    "admissible": not self.refusals,
                    "refusals": [{"code": c, "message": m}
                                 for c, m in self.refusals]}})
            elif name == "device_add" and self.mode == "error":
                self.send(f, {"error": {"class": "GenericError",
                                        "desc": "vfio 0000:01:00.0: group "
                                        "1 is not viable"}})
            elif name == "device_add":
                data = {"port": args["bus"], "device": args["id"],
                        "operation": "add", "cause": "qmp"}
                self.event(f, "PASSTHRU_HOTPLUG", dict(data, phase="started"))
                self.send(f, {"return": {}})
                if self.mode == "complete":
                    self.event(f, "PASSTHRU_HOTPLUG",
                               dict(data, phase="completed", **{
                                   "duration-ms": 27}))
                elif self.mode == "fail":
                    self.event(f, "PASSTHRU_HOTPLUG",
                               dict(data, phase="failed", cause="timeout",
                                    reason="the guest did not enable the "
                                    "device within 5000 ms",
                                    **{"duration-ms": 5000}))
                    self.event(f, "DEVICE_DELETED",
                               {"device": args["id"], "path": "/x"})
            else:
                self.send(f, {"error": {"class": "CommandNotFound",
                                        "desc": f"no {name}"}})

    def stop(self):
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def admissions(self):
        return [c["arguments"]["device"] for c in self.commands
                if c["execute"] == "query-passthru-hotplug-admission"]

    def device_adds(self):
        return [c.get("arguments") for c in self.commands
                if c["execute"] == "device_add"]
