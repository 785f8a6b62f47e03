/*
 * QTest testcase: bad input to NVMe passthrough hotplug
 *
 * A table of wrong QMP commands and command lines, each sent to a VM with
 * pcie-hotplug-passthru ports.  Every one must get a clear error while
 * the VM keeps running: no abort, no hang, no event, no port left in
 * another state, no device left behind.  Command lines that QEMU cannot
 * start with must make it exit with status 1 and the message.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "qemu/thread.h"
#include "nvme-passthru/harness.h"

/* What a QMP entry needs before its command is sent */
enum {
    NEEDS_SERVER = 1 << 0,      /* @SOCK@: a vfio-user NVMe server */
    NEEDS_NIC = 1 << 1,         /* @SOCK@: a server exporting an e1000e */
    NEEDS_PRESENT = 1 << 2,     /* nvme0 present on rp2 */
    NEEDS_FAKE = 1 << 3,        /* @FAKE@: a socket that is not a server */
};

/* What the fake socket at @FAKE@ is */
typedef enum FakeKind {
    FAKE_NONE,
    FAKE_FILE,                  /* a regular file */
    FAKE_DIR,                   /* a folder */
    FAKE_DGRAM,                 /* a UNIX datagram socket */
    FAKE_CLOSE,                 /* accepts, then closes at once */
    FAKE_GARBAGE,               /* accepts, then sends garbage */
    FAKE_SILENT,                /* accepts, then never answers */
} FakeKind;

typedef struct BadQmp {
    const char *name;
    const char *execute;        /* NULL: @args is an HMP command line */
    const char *args;           /* JSON; @SOCK@, @FAKE@ are replaced */
    const char *error;          /* the error says this */
    unsigned needs;
    FakeKind fake;
} BadQmp;

#define SOCK_ARG "'socket': {'type': 'unix', 'path': '@SOCK@'}"
#define FAKE_ARG "'socket': {'type': 'unix', 'path': '@FAKE@'}"
#define NVME_ON(bus) "'driver': 'vfio-user-nvme', 'id': 'nvme1', " \
                     "'bus': '" bus "', "
#define ADD(rest) "{" NVME_ON("rp1") rest "}"

#define ERR_IDENTITY(p) "vfio-user-nvme 'nvme1': property '" p "' is not " \
    "allowed: a passthrough NVMe device keeps its own identity"
#define ERR_ID(id) "vfio-user-nvme: id '" id "' is not well formed"
#define ERR_ADDR(a) "vfio-user-nvme 'nvme1' must be at address 0.0 of " \
    "port 'rp1', not " a ": a port holds one device"
#define ERR_ONLY_FRONTENDS(type) "pcie-hotplug-passthru port 'rp1' " \
    "accepts only vfio-pci, vfio-nvme and vfio-user-nvme devices, not '" \
    type "'"
#define ERR_BLOCKED "passthrough NVMe 'nvme0' on port 'rp2' prevents " \
    "migration and snapshots: remove it first"

static const BadQmp bad_qmp[] = {
    /* Backends: missing, nonexistent, not a vfio-user server */
    { "backend/vfio-user-socket-missing", "device_add",
      "{" NVME_ON("rp1") "'x-msg-timeout': 200}",
      "vfio-user-nvme 'nvme1': No socket specified" },
    { "backend/vfio-user-socket-nonexistent", "device_add",
      ADD("'socket': {'type': 'unix', 'path': '/nonexistent/vfu.sock'}"),
      "vfio-user-nvme 'nvme1': " },
    { "backend/vfio-user-socket-regular-file", "device_add",
      ADD(FAKE_ARG), "vfio-user-nvme 'nvme1': ", NEEDS_FAKE, FAKE_FILE },
    { "backend/vfio-user-socket-folder", "device_add",
      ADD(FAKE_ARG), "vfio-user-nvme 'nvme1': ", NEEDS_FAKE, FAKE_DIR },
    { "backend/vfio-user-socket-datagram", "device_add",
      ADD(FAKE_ARG), "vfio-user-nvme 'nvme1': ", NEEDS_FAKE, FAKE_DGRAM },
    { "backend/vfio-user-socket-closes", "device_add",
      ADD(FAKE_ARG ", 'x-msg-timeout': 200"), "vfio-user-nvme 'nvme1': ",
      NEEDS_FAKE, FAKE_CLOSE },
    { "backend/vfio-user-socket-sends-garbage", "device_add",
      ADD(FAKE_ARG ", 'x-msg-timeout': 200"), "vfio-user-nvme 'nvme1': ",
      NEEDS_FAKE, FAKE_GARBAGE },
    { "backend/vfio-user-socket-never-answers", "device_add",
      ADD(FAKE_ARG ", 'x-msg-timeout': 200"), "vfio-user-nvme 'nvme1': ",
      NEEDS_FAKE, FAKE_SILENT },
    { "backend/vfio-user-socket-inet", "device_add",
      ADD("'socket': {'type': 'inet', 'host': '127.0.0.1', "
          "'port': '1'}"), "Unsupported socket type inet" },
    { "backend/vfio-user-socket-fd-unknown", "device_add",
      ADD("'socket': {'type': 'fd', 'str': 'nosuchfd'}"),
      "Unsupported socket type fd" },
    { "backend/vfio-nvme-host-nonexistent", "device_add",
      "{'driver': 'vfio-nvme', 'id': 'nvme1', 'bus': 'rp1', "
      "'host': '0000:99:00.0'}", "vfio-nvme 'nvme1': " },
    { "backend/vfio-nvme-host-malformed", "device_add",
      "{'driver': 'vfio-nvme', 'id': 'nvme1', 'bus': 'rp1', "
      "'host': 'zz:zz.9'}",
      "Property 'vfio-nvme.host' doesn't take value 'zz:zz.9'" },
    { "backend/vfio-nvme-sysfsdev-nonexistent", "device_add",
      "{'driver': 'vfio-nvme', 'id': 'nvme1', 'bus': 'rp1', "
      "'sysfsdev': '/sys/bus/pci/devices/0000:99:00.0'}",
      "vfio-nvme 'nvme1': " },
    { "backend/vfio-nvme-request-notifier-off", "device_add",
      "{'driver': 'vfio-nvme', 'id': 'nvme1', 'bus': 'rp1', "
      "'host': '0000:99:00.0', 'x-req': false}",
      "vfio-nvme 'nvme1': property 'x-req' is not allowed off: the host "
      "taking the device back must remove it from the guest" },
    { "backend/vfio-nvme-none", "device_add",
      "{'driver': 'vfio-nvme', 'id': 'nvme1', 'bus': 'rp1'}",
      "vfio-nvme 'nvme1': " },

    /*
     * Plain vfio-pci, as libvirt's <hostdev> adds it: the port takes it
     * (vfio-pci's own error for a host device that is not there), with
     * the same rules as the NVMe frontends, checked before the host
     * device is opened.
     */
    { "vfio-pci/host-nonexistent", "device_add",
      "{'driver': 'vfio-pci', 'id': 'hostdev1', 'bus': 'rp1', "
      "'addr': '0x0', 'host': '0000:99:00.0'}",
      "vfio /sys/bus/pci/devices/0000:99:00.0: no such host device" },
    { "vfio-pci/request-notifier-off", "device_add",
      "{'driver': 'vfio-pci', 'id': 'hostdev1', 'bus': 'rp1', "
      "'host': '0000:99:00.0', 'x-req': false}",
      "vfio-pci 'hostdev1': property 'x-req' is not allowed off: the host "
      "taking the device back must remove it from the guest" },
    { "vfio-pci/identity-class-code", "device_add",
      "{'driver': 'vfio-pci', 'id': 'hostdev1', 'bus': 'rp1', "
      "'host': '0000:99:00.0', 'x-pci-class-code': 67586}",
      "vfio-pci 'hostdev1': property 'x-pci-class-code' is not allowed" },
    { "vfio-pci/identity-vendor-id", "device_add",
      "{'driver': 'vfio-pci', 'id': 'hostdev1', 'bus': 'rp1', "
      "'host': '0000:99:00.0', 'x-pci-vendor-id': 6966}",
      "vfio-pci 'hostdev1': property 'x-pci-vendor-id' is not allowed" },
    { "vfio-pci/function-1", "device_add",
      "{'driver': 'vfio-pci', 'id': 'hostdev1', 'bus': 'rp1', "
      "'addr': '0.1', 'host': '0000:99:00.0'}",
      "vfio-pci 'hostdev1' must be at address 0.0 of port 'rp1', not 0.1" },
    { "vfio-pci/id-not-well-formed", "device_add",
      "{'driver': 'vfio-pci', 'id': 'host dev', 'bus': 'rp1', "
      "'host': '0000:99:00.0'}",
      "vfio-pci: id 'host dev' is not well formed" },
    { "vfio-pci/port-already-holds-a-device", "device_add",
      "{'driver': 'vfio-pci', 'id': 'hostdev1', 'bus': 'rp2', "
      "'host': '0000:99:00.0'}", "port 'rp2' already holds 'nvme0'",
      NEEDS_PRESENT },

    /* Devices other than the two NVMe frontends */
    { "device/server-exports-a-nic", "device_add", ADD(SOCK_ARG),
      "vfio-user-nvme 'nvme1': class code 02:00:00 is not an NVMe "
      "controller (01:08:02)", NEEDS_NIC },
    { "device/e1000e-on-port", "device_add",
      "{'driver': 'e1000e', 'id': 'nic1', 'bus': 'rp1', 'romfile': ''}",
      ERR_ONLY_FRONTENDS("e1000e") },
    { "device/emulated-nvme-on-port", "device_add",
      "{'driver': 'nvme', 'id': 'n1', 'bus': 'rp1', 'serial': 'x'}",
      ERR_ONLY_FRONTENDS("nvme") },
    { "device/plain-vfio-user-pci-on-port", "device_add",
      "{'driver': 'vfio-user-pci', 'id': 'v1', 'bus': 'rp1', "
      SOCK_ARG "}", ERR_ONLY_FRONTENDS("vfio-user-pci"), NEEDS_SERVER },
    { "device/vfio-pci-nohotplug-on-port", "device_add",
      "{'driver': 'vfio-pci-nohotplug', 'id': 'v1', 'bus': 'rp1', "
      "'host': '0000:99:00.0'}",
      "Device 'vfio-pci-nohotplug' does not support hotplugging" },
    { "device/bridge-on-port", "device_add",
      "{'driver': 'pcie-root-port', 'id': 'rpy', 'bus': 'rp1', "
      "'chassis': 9}", ERR_ONLY_FRONTENDS("pcie-root-port") },

    /* Buses and addresses */
    { "bus/nonexistent", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': 'nvme1', 'bus': 'nosuchbus', "
      SOCK_ARG "}", "Bus 'nosuchbus' not found", NEEDS_SERVER },
    { "bus/root-complex", "device_add",
      "{" NVME_ON("pcie.0") SOCK_ARG "}",
      "Bus 'pcie.0' does not support hotplugging", NEEDS_SERVER },
    { "bus/ordinary-root-port", "device_add",
      "{" NVME_ON("rpx") SOCK_ARG "}",
      "vfio-user-nvme 'nvme1' must be plugged into a pcie-hotplug-passthru "
      "port", NEEDS_SERVER },
    { "bus/port-already-holds-a-device", "device_add",
      "{" NVME_ON("rp2") SOCK_ARG "}", "port 'rp2' already holds 'nvme0'",
      NEEDS_SERVER | NEEDS_PRESENT },
    { "addr/slot-1", "device_add", ADD("'addr': '0x1', " SOCK_ARG),
      ERR_ADDR("1.0"), NEEDS_SERVER },
    { "addr/function-1-multifunction", "device_add",
      ADD("'addr': '0.1', 'multifunction': true, " SOCK_ARG),
      ERR_ADDR("0.1"), NEEDS_SERVER },
    { "addr/function-7", "device_add", ADD("'addr': '0.7', " SOCK_ARG),
      ERR_ADDR("0.7"), NEEDS_SERVER },
    { "addr/malformed", "device_add", ADD("'addr': 'zz', " SOCK_ARG),
      "Property 'vfio-user-nvme.addr' doesn't take value 'zz'",
      NEEDS_SERVER },
    { "addr/slot-out-of-range", "device_add",
      ADD("'addr': '0x20', " SOCK_ARG),
      "Property 'vfio-user-nvme.addr' doesn't take value '0x20'",
      NEEDS_SERVER },

    /* Identity overrides */
    { "identity/class-code", "device_add",
      ADD("'x-pci-class-code': 67586, " SOCK_ARG),
      ERR_IDENTITY("x-pci-class-code"), NEEDS_SERVER },
    { "identity/vendor-id", "device_add",
      ADD("'x-pci-vendor-id': 6966, " SOCK_ARG),
      ERR_IDENTITY("x-pci-vendor-id"), NEEDS_SERVER },
    { "identity/device-id", "device_add",
      ADD("'x-pci-device-id': 16, " SOCK_ARG),
      ERR_IDENTITY("x-pci-device-id"), NEEDS_SERVER },
    { "identity/sub-vendor-id", "device_add",
      ADD("'x-pci-sub-vendor-id': 6900, " SOCK_ARG),
      ERR_IDENTITY("x-pci-sub-vendor-id"), NEEDS_SERVER },
    { "identity/sub-device-id", "device_add",
      ADD("'x-pci-sub-device-id': 4352, " SOCK_ARG),
      ERR_IDENTITY("x-pci-sub-device-id"), NEEDS_SERVER },

    /* Ids */
    { "id/duplicate-of-present-device", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': 'nvme0', 'bus': 'rp1', "
      SOCK_ARG "}", "Duplicate device ID 'nvme0'",
      NEEDS_SERVER | NEEDS_PRESENT },
    { "id/duplicate-of-port", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': 'rp1', 'bus': 'rp1', "
      SOCK_ARG "}", "Duplicate device ID 'rp1'", NEEDS_SERVER },
    { "id/empty", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': '', 'bus': 'rp1', " SOCK_ARG "}",
      ERR_ID(""), NEEDS_SERVER },
    { "id/space", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': 'a b', 'bus': 'rp1', "
      SOCK_ARG "}", ERR_ID("a b"), NEEDS_SERVER },
    { "id/slash", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': 'a/b', 'bus': 'rp1', "
      SOCK_ARG "}", ERR_ID("a/b"), NEEDS_SERVER },
    { "id/quote", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': 'a\"b', 'bus': 'rp1', "
      SOCK_ARG "}", ERR_ID("a\"b"), NEEDS_SERVER },
    { "id/leading-digit", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': '9a', 'bus': 'rp1', "
      SOCK_ARG "}", ERR_ID("9a"), NEEDS_SERVER },

    /* Property values: out of range, wrongly typed */
    { "property/removal-unknown", "qom-set",
      "{'path': '/machine/peripheral/rp1', 'property': 'removal', "
      "'value': 'sometimes'}", "Parameter 'removal' does not accept value "
      "'sometimes'" },
    { "property/removal-number", "qom-set",
      "{'path': '/machine/peripheral/rp1', 'property': 'removal', "
      "'value': 1}", "Invalid parameter type for 'removal', expected: "
      "string" },
    { "property/unplug-timeout-negative", "qom-set",
      "{'path': '/machine/peripheral/rp1', "
      "'property': 'unplug-timeout-ms', 'value': -1}",
      "Parameter 'unplug-timeout-ms' expects uint32_t" },
    { "property/unplug-timeout-too-large", "qom-set",
      "{'path': '/machine/peripheral/rp1', "
      "'property': 'unplug-timeout-ms', 'value': 4294967296}",
      "Parameter 'unplug-timeout-ms' expects uint32_t" },
    { "property/add-timeout-negative", "qom-set",
      "{'path': '/machine/peripheral/rp1', "
      "'property': 'add-timeout-ms', 'value': -1}",
      "Parameter 'add-timeout-ms' expects uint32_t" },
    { "property/add-timeout-string", "qom-set",
      "{'path': '/machine/peripheral/rp1', "
      "'property': 'add-timeout-ms', 'value': 'soon'}",
      "Parameter 'add-timeout-ms' expects " },
    { "property/unplug-timeout-string", "qom-set",
      "{'path': '/machine/peripheral/rp1', "
      "'property': 'unplug-timeout-ms', 'value': 'soon'}",
      "Parameter 'unplug-timeout-ms' expects " },
    { "property/socket-wrong-type", "device_add",
      ADD("'socket': '/tmp/x.sock'"),
      "Invalid parameter type for 'socket', expected: object" },
    /* A bus that is no string is ignored: the default bus is pcie.0 */
    { "property/bus-wrong-type", "device_add",
      "{'driver': 'vfio-user-nvme', 'id': 'nvme1', 'bus': 5, "
      SOCK_ARG "}", "Bus 'pcie.0' does not support hotplugging",
      NEEDS_SERVER },
    { "property/chassis-of-port", "qom-set",
      "{'path': '/machine/peripheral/rp1', 'property': 'chassis', "
      "'value': 7}", "Attempt to set property 'chassis' on device 'rp1' "
      "(type 'pcie-hotplug-passthru') after it was realized" },

    /* Devices the VM's rules forbid, and hot-adding a port */
    { "rules/hot-add-port", "device_add",
      "{'driver': 'pcie-hotplug-passthru', 'id': 'rp9', 'bus': 'pcie.0', "
      "'chassis': 9}",
      "Device 'pcie-hotplug-passthru' does not support hotplugging" },
    { "rules/cpu", "device_add",
      "{'driver': 'qemu64-x86_64-cpu', 'id': 'cpu1', 'socket-id': 1, "
      "'core-id': 0, 'thread-id': 0}", "passthrough hotplug does not allow "
      "CPU hotplug: cannot add 'qemu64-x86_64-cpu'" },
    { "rules/pc-dimm", "device_add",
      "{'driver': 'pc-dimm', 'id': 'dimm1', 'memdev': 'm0'}",
      "passthrough hotplug does not allow memory hotplug: cannot add "
      "'pc-dimm'" },
    { "rules/intel-iommu", "device_add",
      "{'driver': 'intel-iommu', 'id': 'iommu1'}", "passthrough hotplug "
      "does not allow a vIOMMU visible to the guest: cannot add "
      "'intel-iommu'" },
    { "rules/virtio-iommu", "device_add",
      "{'driver': 'virtio-iommu-pci', 'id': 'iommu1'}", "passthrough "
      "hotplug does not allow a vIOMMU visible to the guest: cannot add "
      "'virtio-iommu-pci'" },

    /* Migration and snapshots while a device is attached */
    { "attached/migrate", "migrate", "{'uri': 'exec:cat >/dev/null'}",
      ERR_BLOCKED, NEEDS_PRESENT },
    { "attached/savevm", NULL, "savevm snap0", ERR_BLOCKED, NEEDS_PRESENT },

    /* Removing what is not there */
    { "remove/nonexistent-id", "device_del", "{'id': 'nosuchdevice'}",
      "Device 'nosuchdevice' not found" },
    { "remove/the-port", "device_del", "{'id': 'rp1'}",
      "Device 'pcie-hotplug-passthru' does not support hotplugging" },
};

/* A fake peer at @path that is no vfio-user server */
typedef struct Fake {
    FakeKind kind;
    char *path;
    int fd;
    QemuThread thread;
    int peer;
} Fake;

static void *fake_run(void *opaque)
{
    Fake *f = opaque;
    char buf[4096];

    f->peer = accept(f->fd, NULL, NULL);
    if (f->peer < 0) {
        return NULL;
    }
    switch (f->kind) {
    case FAKE_CLOSE:
        close(f->peer);
        f->peer = -1;
        break;
    case FAKE_GARBAGE:
        memset(buf, 0xa5, sizeof(buf));
        if (write(f->peer, buf, sizeof(buf)) < 0) {
            break;
        }
        /* fall through: and keep reading until the client gives up */
    case FAKE_SILENT:
        while (read(f->peer, buf, sizeof(buf)) > 0) {
            /* nothing */
        }
        break;
    default:
        break;
    }
    return NULL;
}

static void fake_start(Fake *f, FakeKind kind, const char *dir)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd;

    f->kind = kind;
    f->fd = -1;
    f->peer = -1;
    f->path = g_strdup_printf("%s/fake.sock", dir);
    switch (kind) {
    case FAKE_FILE:
        fd = open(f->path, O_CREAT | O_WRONLY, 0600);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
        return;
    case FAKE_DIR:
        g_assert_cmpint(mkdir(f->path, 0700), ==, 0);
        return;
    default:
        break;
    }
    f->fd = socket(AF_UNIX, kind == FAKE_DGRAM ? SOCK_DGRAM : SOCK_STREAM,
                   0);
    g_assert_cmpint(f->fd, >=, 0);
    g_strlcpy(addr.sun_path, f->path, sizeof(addr.sun_path));
    g_assert_cmpint(bind(f->fd, (struct sockaddr *)&addr, sizeof(addr)),
                    ==, 0);
    if (kind != FAKE_DGRAM) {
        g_assert_cmpint(listen(f->fd, 1), ==, 0);
        qemu_thread_create(&f->thread, "fake-vfio-user", fake_run, f,
                           QEMU_THREAD_JOINABLE);
    }
}

static void fake_stop(Fake *f)
{
    if (f->kind == FAKE_NONE) {
        return;
    }
    if (f->fd >= 0) {
        /* Wake a thread still waiting in accept() */
        shutdown(f->fd, SHUT_RDWR);
        if (f->kind != FAKE_DGRAM) {
            qemu_thread_join(&f->thread);
        }
        close(f->fd);
    }
    if (f->peer >= 0) {
        close(f->peer);
    }
    if (f->kind == FAKE_DIR) {
        rmdir(f->path);
    } else {
        unlink(f->path);
    }
    g_free(f->path);
}

static char *replace(const char *s, const char *from, const char *to)
{
    g_auto(GStrv) parts = g_strsplit(s, from, -1);

    return g_strjoinv(to ? to : "", parts);
}

static void test_bad_qmp(const void *data)
{
    const BadQmp *b = data;
    Test *t = test_start_extra(&(const Mode){ "acpi", false }, 2,
                               "-device pcie-root-port,id=rpx,bus=pcie.0,"
                               "chassis=9,addr=0x9");
    g_autofree char *args = NULL;
    g_autofree char *with_sock = NULL;
    Fake fake = { .kind = FAKE_NONE };
    const char *desc;
    g_autoptr(QDict) resp = NULL;
    g_autoptr(QDict) status = NULL;

    if (b->needs & NEEDS_PRESENT) {
        server_start(t, 1, SERVER_NVME);
        hot_add(t, 2, 1, "nvme0");
    }
    if (b->needs & (NEEDS_SERVER | NEEDS_NIC)) {
        server_start(t, 0, b->needs & NEEDS_NIC ? SERVER_NIC : SERVER_NVME);
    }
    if (b->needs & NEEDS_FAKE) {
        fake_start(&fake, b->fake, t->dir);
    }
    with_sock = replace(b->args, "@SOCK@", t->srv[0].sock);
    args = replace(with_sock, "@FAKE@", fake.path);

    if (b->execute) {
        QObject *obj = qobject_from_json(args, &error_abort);

        resp = qtest_qmp(t->qts, "{'execute': %s, 'arguments': %p}",
                         b->execute, obj);
        g_assert_true(qdict_haskey(resp, "error"));
        desc = qdict_get_try_str(qdict_get_qdict(resp, "error"), "desc");
    } else {
        g_autofree char *out = qtest_hmp(t->qts, "%s", args);

        resp = qdict_new();
        qdict_put_str(resp, "out", out);
        desc = qdict_get_str(resp, "out");
    }
    g_test_message("%s -> %s", args, desc);
    g_assert_nonnull(desc);
    g_assert_cmpstr(desc, !=, "");
    g_assert_nonnull(strstr(desc, b->error));

    /* The VM runs on, as it was */
    g_assert_true(qtest_probe_child(t->qts));
    status = qtest_qmp(t->qts, "{'execute': 'query-status'}");
    g_assert_true(qdict_get_bool(qdict_get_qdict(status, "return"),
                                 "running"));
    assert_no_hotplug_event(t);
    check_port(t, 1, "empty", NULL, NULL);
    if (b->needs & NEEDS_PRESENT) {
        check_port(t, 2, "present", "nvme0", NULL);
    } else {
        check_port(t, 2, "empty", NULL, NULL);
    }
    g_assert_null(event_take(t, "DEVICE_DELETED"));

    fake_stop(&fake);
    test_end(t);
}

/* Command lines QEMU cannot start with: exit status 1 and the reason */
typedef struct BadCmdline {
    const char *name;
    const char *args;           /* @NIC@: a server exporting an e1000e */
    const char *error;
    bool native;                /* native PCIe hotplug, not ACPI */
} BadCmdline;

#define PORT_ARGS "-device pcie-hotplug-passthru,id=rp1,bus=pcie.0," \
                  "chassis=1,addr=0x4 "

static const BadCmdline bad_cmdline[] = {
    { "port/removal-unknown",
      "-device pcie-hotplug-passthru,id=rp1,bus=pcie.0,chassis=1,"
      "removal=sometimes", "Parameter 'removal' does not accept value "
      "'sometimes'" },
    { "port/unplug-timeout-negative",
      "-device pcie-hotplug-passthru,id=rp1,bus=pcie.0,chassis=1,"
      "unplug-timeout-ms=-1",
      "Parameter 'unplug-timeout-ms' expects uint32_t" },
    { "port/unplug-timeout-not-a-number",
      "-device pcie-hotplug-passthru,id=rp1,bus=pcie.0,chassis=1,"
      "unplug-timeout-ms=soon",
      "Parameter 'unplug-timeout-ms' expects integer" },
    { "frontend/on-root-complex",
      "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
      "\"bus\":\"pcie.0\",\"socket\":{\"type\":\"unix\","
      "\"path\":\"/nonexistent\"}}'",
      "vfio-user-nvme 'nvme0' must be plugged into a pcie-hotplug-passthru "
      "port" },
    { "frontend/at-function-1",
      PORT_ARGS "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
      "\"bus\":\"rp1\",\"addr\":\"0.1\",\"socket\":{\"type\":\"unix\","
      "\"path\":\"/nonexistent\"}}'",
      "vfio-user-nvme 'nvme0' must be at address 0.0 of port 'rp1', not "
      "0.1: a port holds one device", true },
    { "frontend/at-function-1-acpi",
      PORT_ARGS "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
      "\"bus\":\"rp1\",\"addr\":\"0.1\",\"socket\":{\"type\":\"unix\","
      "\"path\":\"/nonexistent\"}}'",
      "vfio-user-nvme 'nvme0' must be at address 0.0 of port 'rp1', not "
      "0.1: a port holds one device" },
    { "frontend/bad-id",
      PORT_ARGS "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"n 0\","
      "\"bus\":\"rp1\",\"socket\":{\"type\":\"unix\","
      "\"path\":\"/nonexistent\"}}'",
      "vfio-user-nvme: id 'n 0' is not well formed", true },
    { "frontend/bad-id-acpi",
      PORT_ARGS "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"n 0\","
      "\"bus\":\"rp1\",\"socket\":{\"type\":\"unix\","
      "\"path\":\"/nonexistent\"}}'",
      "vfio-user-nvme: id 'n 0' is not well formed" },
    { "frontend/server-missing",
      PORT_ARGS "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
      "\"bus\":\"rp1\",\"socket\":{\"type\":\"unix\","
      "\"path\":\"/nonexistent\"}}'", "vfio-user-nvme 'nvme0': " },
    { "frontend/identity-override",
      PORT_ARGS "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
      "\"bus\":\"rp1\",\"x-pci-class-code\":67586,"
      "\"socket\":{\"type\":\"unix\",\"path\":\"/nonexistent\"}}'",
      "property 'x-pci-class-code' is not allowed", true },
    { "frontend/identity-override-acpi",
      PORT_ARGS "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
      "\"bus\":\"rp1\",\"x-pci-class-code\":67586,"
      "\"socket\":{\"type\":\"unix\",\"path\":\"/nonexistent\"}}'",
      "property 'x-pci-class-code' is not allowed" },
    { "frontend/server-exports-a-nic",
      POLICY_ARGS " " PORT_ARGS
      "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
      "\"bus\":\"rp1\",\"socket\":{\"type\":\"unix\","
      "\"path\":\"@NIC@\"}}'",
      "vfio-user-nvme 'nvme0': class code 02:00:00 is not an NVMe "
      "controller (01:08:02)" },
    { "vfio-pci/identity-override",
      PORT_ARGS "-device vfio-pci,id=hostdev0,bus=rp1,host=0000:99:00.0,"
      "x-pci-device-id=16",
      "vfio-pci 'hostdev0': property 'x-pci-device-id' is not allowed" },
    { "vfio-pci/request-notifier-off",
      PORT_ARGS "-device vfio-pci,id=hostdev0,bus=rp1,host=0000:99:00.0,"
      "x-req=off",
      "vfio-pci 'hostdev0': property 'x-req' is not allowed off" },
    { "vfio-pci-nohotplug",
      PORT_ARGS "-device vfio-pci-nohotplug,id=hostdev0,bus=rp1,"
      "host=0000:99:00.0", ERR_ONLY_FRONTENDS("vfio-pci-nohotplug"), true },
    { "port-holds-other-device",
      POLICY_ARGS " " PORT_ARGS "-device e1000e,bus=rp1,romfile=",
      "pcie-hotplug-passthru port 'rp1' accepts only vfio-pci, vfio-nvme "
      "and vfio-user-nvme devices, not 'e1000e'" },
};

static void test_bad_cmdline(const void *data)
{
    const BadCmdline *b = data;
    const Mode mode = { b->native ? "native" : "acpi", b->native };
    Test *t = test_new();
    g_autofree char *args = NULL;
    g_autofree char *errout = NULL;
    int status;

    if (strstr(b->args, "@NIC@")) {
        server_start(t, 0, SERVER_NIC);
    }
    args = replace(b->args, "@NIC@", t->srv[0].sock);
    errout = run_qemu_with(&mode, args, &status);
    g_test_message("stderr: %s", errout);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_assert_nonnull(strstr(errout, b->error));
    g_assert_null(strstr(errout, "Assertion"));
    test_free(t);
}

int main(int argc, char **argv)
{
    int i;

    g_test_init(&argc, &argv, NULL);
    for (i = 0; i < ARRAY_SIZE(bad_qmp); i++) {
        g_autofree char *path = g_strdup_printf(
            "/passthru-bad-input/qmp/%s", bad_qmp[i].name);

        qtest_add_data_func(path, &bad_qmp[i], test_bad_qmp);
    }
    for (i = 0; i < ARRAY_SIZE(bad_cmdline); i++) {
        g_autofree char *path = g_strdup_printf(
            "/passthru-bad-input/command-line/%s", bad_cmdline[i].name);

        qtest_add_data_func(path, &bad_cmdline[i], test_bad_cmdline);
    }
    return g_test_run();
}
