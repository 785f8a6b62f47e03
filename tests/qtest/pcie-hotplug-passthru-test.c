/*
 * QTest testcase for hotplug of passthrough NVMe controllers on
 * pcie-hotplug-passthru root ports
 *
 * Each test starts a q35 VM with one or two pcie-hotplug-passthru ports
 * and, for every NVMe controller it plugs, a vfio-user server: a second
 * QEMU process (-machine x-remote + x-vfio-user-server) exporting an
 * emulated NVMe controller over a UNIX socket.  The test plays the guest:
 * it numbers the buses behind the ports, enables a hot-added controller,
 * ejects it through the ACPI PCI hotplug registers or the port's PCIe
 * Slot Control, and checks every PASSTHRU_HOTPLUG event and the state
 * query-passthru-hotplug reports on the way.  Every test runs with ACPI
 * PCI hotplug (the q35 default) and with native PCIe hotplug.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/wait.h>
#ifdef CONFIG_LINUX
#include <sys/prctl.h>
#endif
#include "qemu/units.h"
#include "libqtest.h"
#include "libqos/pci.h"
#include "libqos/pci-pc.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_regs.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#include "qobject/qjson.h"

/* ACPI PCI hotplug registers of q35 (hw/acpi/pcihp.c) */
#define ACPI_PCIHP_ADDR_ICH9    0x0cc0
#define PCI_DOWN_BASE           0x0004
#define PCI_EJ_BASE             0x0008
#define PCI_SEL_BASE            0x0010

#define TIMEOUT_US              (10 * G_USEC_PER_SEC)
#define MAX_PORTS               2
#define MAX_SERVERS             33
#define UNPLUG_TIMEOUT_MS       200
#define MS_TO_NS(ms)            ((int64_t)(ms) * 1000 * 1000)

/* What the passthrough hotplug policy asks of every VM with a port */
#define POLICY_ARGS \
    "-drive if=pflash,format=raw,readonly=on," \
    "file=/usr/share/OVMF/OVMF_CODE_4M.fd -overcommit mem-lock=on"

#define NATIVE_HOTPLUG \
    "-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"
#define ERR_OUTSIDE_PORT \
    "vfio-user-nvme 'nvme0' must be plugged into a pcie-hotplug-passthru port"

#define ERR_BUSY_ADD \
    "another passthrough hotplug operation is pending: " \
    "add of 'nvme0' on port 'rp1'"
#define ERR_BUSY_REMOVE \
    "another passthrough hotplug operation is pending: " \
    "remove of 'nvme0' on port 'rp1'"

/* For expect_hotplug_event(): the event has a reason, whatever its text */
static const char REASON_ANY[] = "<any reason>";

typedef struct Mode {
    const char *name;       /* "hotplug-mode" of query-passthru-hotplug */
    bool native;
} Mode;

typedef enum ServerKind {
    SERVER_NVME,            /* exports an emulated NVMe controller */
    SERVER_NIC,             /* exports an e1000e: class 02:00:00 */
} ServerKind;

typedef struct Server {
    char *sock;
    GPid pid;
    bool running;
} Server;

/*
 * Port rpN (N = 1..MAX_PORTS) is at pcie.0 slot 3 + N, has chassis N and
 * the guest gives it secondary bus N.
 */
typedef struct Test {
    const Mode *mode;
    int nports;
    char *dir;
    Server srv[MAX_SERVERS];
    const char *backend[MAX_PORTS + 1];  /* socket of the device on rpN */
    QTestState *qts;
    QPCIBus *pcibus;
    GQueue events;                       /* QMP events not yet checked */
} Test;

static const char *const port_ids[MAX_PORTS + 1] = { NULL, "rp1", "rp2" };

#define PORT(n) port_ids[n]

/* vfio-user server: the "host NVMe" */

static void server_child_setup(gpointer unused)
{
#ifdef CONFIG_LINUX
    /* Do not outlive a test that fails half-way */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
}

static bool server_exited(Server *s)
{
    int status;

    if (s->running && waitpid(s->pid, &status, WNOHANG) == s->pid) {
        s->running = false;
    }
    return !s->running;
}

static void server_start(Test *t, int i, ServerKind kind)
{
    Server *s = &t->srv[i];
    g_autofree char *img = g_strdup_printf("%s/nvme%d.img", t->dir, i);
    g_autofree char *drive = g_strdup_printf(
        "if=none,id=d0,file=%s,format=raw", img);
    g_autofree char *object = NULL;
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) err = NULL;
    gint64 deadline;
    int fd;

    g_assert_false(s->running);
    s->sock = g_strdup_printf("%s/vfu%d.sock", t->dir, i);
    object = g_strdup_printf(
        "{\"qom-type\":\"x-vfio-user-server\",\"id\":\"vfu0\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"},"
        "\"device\":\"nvme0\"}", s->sock);

    g_ptr_array_add(argv, (char *)qtest_qemu_binary(NULL));
    g_ptr_array_add(argv, (char *)"-machine");
    g_ptr_array_add(argv, (char *)"x-remote,vfio-user=on");
    g_ptr_array_add(argv, (char *)"-nodefaults");
    g_ptr_array_add(argv, (char *)"-display");
    g_ptr_array_add(argv, (char *)"none");
    if (kind == SERVER_NVME) {
        fd = open(img, O_CREAT | O_RDWR | O_TRUNC, 0600);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(ftruncate(fd, 1 * MiB), ==, 0);
        close(fd);
        g_ptr_array_add(argv, (char *)"-drive");
        g_ptr_array_add(argv, drive);
        g_ptr_array_add(argv, (char *)"-device");
        g_ptr_array_add(argv, (char *)"nvme,id=nvme0,serial=hp0,drive=d0");
    } else {
        /* The x-vfio-user-server object names its device "nvme0" */
        g_ptr_array_add(argv, (char *)"-device");
        g_ptr_array_add(argv, (char *)"e1000e,id=nvme0,romfile=");
    }
    g_ptr_array_add(argv, (char *)"-object");
    g_ptr_array_add(argv, object);
    g_ptr_array_add(argv, NULL);

    g_assert_true(g_spawn_async(NULL, (char **)argv->pdata, NULL,
                                G_SPAWN_DO_NOT_REAP_CHILD,
                                server_child_setup, NULL, &s->pid, &err));
    g_assert_no_error(err);
    s->running = true;

    deadline = g_get_monotonic_time() + TIMEOUT_US;
    while (!g_file_test(s->sock, G_FILE_TEST_EXISTS)) {
        g_assert_false(server_exited(s));
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

/* The host loses the device: the server dies without a word */
static void server_kill(Server *s)
{
    g_assert_true(s->running);
    g_assert_cmpint(kill(s->pid, SIGKILL), ==, 0);
    g_assert_cmpint(waitpid(s->pid, NULL, 0), ==, s->pid);
    s->running = false;
}

static void server_stop(Server *s)
{
    if (!s->pid) {
        return;
    }
    /* A server whose client never connected does not exit by itself */
    if (!server_exited(s)) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->running = false;
    }
    g_spawn_close_pid(s->pid);
    s->pid = 0;
}

/* QMP events */

static bool event_cb(QTestState *qts, const char *name, QDict *event,
                     void *opaque)
{
    Test *t = opaque;

    g_queue_push_tail(&t->events, qobject_ref(event));
    return true;
}

/* Remove and return the oldest queued event called @name, or NULL */
static QDict *event_take(Test *t, const char *name)
{
    GList *l;

    for (l = t->events.head; l; l = l->next) {
        QDict *ev = l->data;

        if (!strcmp(qdict_get_str(ev, "event"), name)) {
            g_queue_delete_link(&t->events, l);
            return ev;
        }
    }
    return NULL;
}

/* Make sure every event QEMU sent before now is in t->events */
static void events_sync(Test *t)
{
    qobject_unref(qtest_qmp(t->qts, "{'execute': 'query-status'}"));
}

/*
 * Wait at most TIMEOUT_US for the next event called @name.  Unlike
 * qtest_qmp_eventwait_ref(), this keeps the events of other names, so
 * that DEVICE_DELETED may come before or after PASSTHRU_HOTPLUG.
 */
static QDict *event_wait(Test *t, const char *name)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    QDict *ev;

    while (!(ev = event_take(t, name))) {
        if (g_get_monotonic_time() > deadline) {
            g_test_message("no %s event within %d s", name,
                           (int)(TIMEOUT_US / G_USEC_PER_SEC));
        }
        g_assert_cmpint(g_get_monotonic_time(), <=, deadline);
        g_usleep(10 * 1000);
        events_sync(t);
    }
    return ev;
}

/*
 * The next PASSTHRU_HOTPLUG event has exactly this data.  @reason NULL
 * means the event has no reason, REASON_ANY that it has one.
 */
static void expect_hotplug_event(Test *t, const char *port,
                                 const char *device, const char *operation,
                                 const char *phase, const char *cause,
                                 const char *reason)
{
    g_autoptr(QDict) ev = event_wait(t, "PASSTHRU_HOTPLUG");
    QDict *data = qdict_get_qdict(ev, "data");

    g_test_message("PASSTHRU_HOTPLUG %s %s %s %s (%s)", port, device,
                   operation, phase, cause);
    g_assert_nonnull(data);
    g_assert_cmpstr(qdict_get_try_str(data, "port"), ==, port);
    g_assert_cmpstr(qdict_get_try_str(data, "device"), ==, device);
    g_assert_cmpstr(qdict_get_try_str(data, "operation"), ==, operation);
    g_assert_cmpstr(qdict_get_try_str(data, "phase"), ==, phase);
    g_assert_cmpstr(qdict_get_try_str(data, "cause"), ==, cause);

    if (!strcmp(phase, "started")) {
        g_assert_false(qdict_haskey(data, "duration-ms"));
    } else {
        g_assert_true(qdict_haskey(data, "duration-ms"));
        g_assert_cmpint(qdict_get_int(data, "duration-ms"), >=, 0);
    }

    if (!reason) {
        g_assert_false(qdict_haskey(data, "reason"));
    } else if (reason == REASON_ANY) {
        g_assert_nonnull(qdict_get_try_str(data, "reason"));
        g_assert_cmpstr(qdict_get_try_str(data, "reason"), !=, "");
    } else {
        g_assert_cmpstr(qdict_get_try_str(data, "reason"), ==, reason);
    }
}

static void expect_device_deleted(Test *t, const char *id)
{
    g_autoptr(QDict) ev = event_wait(t, "DEVICE_DELETED");

    g_assert_cmpstr(qdict_get_try_str(qdict_get_qdict(ev, "data"),
                                      "device"), ==, id);
}

/* A refused operation emitted no event */
static void assert_no_hotplug_event(Test *t)
{
    g_autoptr(QDict) ev = NULL;

    events_sync(t);
    ev = event_take(t, "PASSTHRU_HOTPLUG");
    if (ev) {
        g_autoptr(GString) s = qobject_to_json(QOBJECT(ev));

        g_test_message("unexpected event: %s", s->str);
    }
    g_assert_null(ev);
}

/* query-passthru-hotplug */

static QDict *query(Test *t)
{
    QDict *resp = qtest_qmp(t->qts, "{'execute': 'query-passthru-hotplug'}");

    g_assert_true(qdict_haskey(resp, "return"));
    return resp;
}

/* Port rp@n in the answer @resp of query() */
static QDict *port_info(QDict *resp, int n)
{
    QList *ports = qdict_get_qlist(qdict_get_qdict(resp, "return"), "ports");
    const QListEntry *e = qlist_first(ports);
    QDict *port;
    int i;

    for (i = 1; i < n; i++) {
        g_assert_nonnull(e);
        e = qlist_next(e);
    }
    g_assert_nonnull(e);
    port = qobject_to(QDict, qlist_entry_obj(e));
    g_assert_nonnull(port);
    g_assert_cmpstr(qdict_get_try_str(port, "id"), ==, PORT(n));
    return port;
}

/*
 * Port rp@n reports @state, the device @id (NULL: no device) and the
 * pending @operation (NULL: none), and nothing else.
 */
static void check_port(Test *t, int n, const char *state, const char *id,
                       const char *operation)
{
    g_autoptr(QDict) resp = query(t);
    QDict *port = port_info(resp, n);

    g_assert_cmpint(qdict_get_int(port, "chassis"), ==, n);
    g_assert_cmpint(qdict_get_int(port, "slot"), ==, 0);
    g_assert_cmpstr(qdict_get_try_str(port, "state"), ==, state);

    if (id) {
        g_assert_cmpstr(qdict_get_try_str(port, "device"), ==, id);
        g_assert_cmpstr(qdict_get_try_str(port, "transport"), ==,
                        "vfio-user");
        g_assert_cmpstr(qdict_get_try_str(port, "backend"), ==,
                        t->backend[n]);
    } else {
        g_assert_false(qdict_haskey(port, "device"));
        g_assert_false(qdict_haskey(port, "transport"));
        g_assert_false(qdict_haskey(port, "backend"));
    }

    if (operation) {
        g_assert_cmpstr(qdict_get_try_str(port, "operation"), ==, operation);
        g_assert_cmpint(qdict_get_int(port, "elapsed-ms"), >=, 0);
    } else {
        g_assert_false(qdict_haskey(port, "operation"));
        g_assert_false(qdict_haskey(port, "elapsed-ms"));
    }
}

static void port_set(Test *t, int n, const char *property, QObject *value)
{
    g_autofree char *path = g_strdup_printf("/machine/peripheral/%s",
                                            PORT(n));

    qtest_qmp_assert_success(t->qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': %s, 'property': %s, 'value': %p}}",
                             path, property, value);
}

/* The guest: config space, ACPI PCI hotplug, PCIe Slot Control */

static QPCIDevice *port_dev(Test *t, int n)
{
    QPCIDevice *port = qpci_device_find(t->pcibus, QPCI_DEVFN(3 + n, 0));

    g_assert_nonnull(port);
    return port;
}

/* Device 0 on the secondary bus of rp@n; the PC bus takes bus << 8 */
static QPCIDevice *nvme_dev(Test *t, int n)
{
    QPCIDevice *dev = qpci_device_find(t->pcibus, QPCI_DEVFN(n << 5, 0));

    g_assert_nonnull(dev);
    return dev;
}

static void port_number_bus(Test *t, int n)
{
    g_autofree QPCIDevice *port = port_dev(t, n);

    qpci_config_writeb(port, PCI_PRIMARY_BUS, 0);
    qpci_config_writeb(port, PCI_SECONDARY_BUS, n);
    qpci_config_writeb(port, PCI_SUBORDINATE_BUS, n);
}

/* Native hotplug: switch the slot's power and power indicator */
static void slot_power(Test *t, int n, bool on)
{
    g_autofree QPCIDevice *port = port_dev(t, n);
    uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);
    uint16_t ctl;

    g_assert_cmpuint(exp, !=, 0);
    ctl = qpci_config_readw(port, exp + PCI_EXP_SLTCTL);
    ctl &= ~(PCI_EXP_SLTCTL_PCC | PCI_EXP_SLTCTL_PIC);
    ctl |= on ? PCI_EXP_SLTCTL_PWR_ON | PCI_EXP_SLTCTL_PWR_IND_ON
              : PCI_EXP_SLTCTL_PWR_OFF | PCI_EXP_SLTCTL_PWR_IND_OFF;
    qpci_config_writew(port, exp + PCI_EXP_SLTCTL, ctl);
}

/* ACPI hotplug: the bus selector (BSEL) of rp@n's secondary bus */
static int port_bsel(Test *t, int n)
{
    g_autofree char *path = g_strdup_printf("/machine/peripheral/%s/%s",
                                            PORT(n), PORT(n));
    g_autoptr(QDict) resp = qtest_qmp(
        t->qts, "{'execute': 'qom-get', 'arguments': {"
        "'path': %s, 'property': 'acpi-pcihp-bsel'}}", path);

    g_assert_true(qdict_haskey(resp, "return"));
    return qdict_get_int(resp, "return");
}

/* ACPI hotplug: write B0EJ for slot 0 of rp@n's secondary bus */
static void acpi_eject(Test *t, int n)
{
    qtest_outl(t->qts, ACPI_PCIHP_ADDR_ICH9 + PCI_SEL_BASE, port_bsel(t, n));
    qtest_outl(t->qts, ACPI_PCIHP_ADDR_ICH9 + PCI_EJ_BASE, 1);
}

/* The guest driver takes the controller on rp@n into use */
static void guest_enable(Test *t, int n)
{
    g_autofree QPCIDevice *dev = NULL;
    uint8_t msix;
    uint16_t flags;

    if (t->mode->native) {
        g_autofree QPCIDevice *port = port_dev(t, n);
        uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);

        uint16_t events = PCI_EXP_SLTSTA_ABP | PCI_EXP_SLTSTA_PDC;

        /*
         * pciehp acknowledges the slot events that are set (QEMU ignores
         * a write that clears bits that are not), powers the slot on
         */
        events &= qpci_config_readw(port, exp + PCI_EXP_SLTSTA);
        qpci_config_writew(port, exp + PCI_EXP_SLTSTA, events);
        g_assert_cmphex(qpci_config_readw(port, exp + PCI_EXP_SLTSTA) &
                        (PCI_EXP_SLTSTA_ABP | PCI_EXP_SLTSTA_PDC), ==, 0);
        slot_power(t, n, true);
    }
    dev = nvme_dev(t, n);
    g_assert_cmphex(qpci_config_readw(dev, PCI_CLASS_DEVICE), ==,
                    PCI_CLASS_STORAGE_EXPRESS);
    qpci_config_writew(dev, PCI_COMMAND,
                       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    msix = qpci_find_capability(dev, PCI_CAP_ID_MSIX, 0);
    g_assert_cmpuint(msix, !=, 0);
    flags = qpci_config_readw(dev, msix + PCI_MSIX_FLAGS);
    qpci_config_writew(dev, msix + PCI_MSIX_FLAGS,
                       flags | PCI_MSIX_FLAGS_ENABLE);
}

/* The guest agrees to the removal of the device on rp@n */
static void guest_eject(Test *t, int n)
{
    if (t->mode->native) {
        slot_power(t, n, false);
    } else {
        qtest_outl(t->qts, ACPI_PCIHP_ADDR_ICH9 + PCI_SEL_BASE,
                   port_bsel(t, n));
        g_assert_cmphex(qtest_inl(t->qts, ACPI_PCIHP_ADDR_ICH9 +
                                  PCI_DOWN_BASE) & 1, ==, 1);
        acpi_eject(t, n);
    }
}

/*
 * After a surprise removal from rp@n the guest has been told, without
 * its agreement, that the device is gone: ACPI asks it to eject the
 * slot; the native slot says the card is absent, with Presence Detect
 * Changed and Attention Button Pressed (a Linux guest with an attention
 * button enables only the latter).
 */
static void expect_guest_told_gone(Test *t, int n)
{
    /* Nothing answers config reads at the device's address any more */
    g_assert_null(qpci_device_find(t->pcibus, QPCI_DEVFN(n << 5, 0)));
    if (t->mode->native) {
        g_autofree QPCIDevice *port = port_dev(t, n);
        uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);
        uint16_t sta = qpci_config_readw(port, exp + PCI_EXP_SLTSTA);

        g_assert_cmphex(sta & PCI_EXP_SLTSTA_PDS, ==, 0);
        g_assert_cmphex(sta & PCI_EXP_SLTSTA_PDC, ==, PCI_EXP_SLTSTA_PDC);
        g_assert_cmphex(sta & PCI_EXP_SLTSTA_ABP, ==, PCI_EXP_SLTSTA_ABP);
    } else {
        qtest_outl(t->qts, ACPI_PCIHP_ADDR_ICH9 + PCI_SEL_BASE,
                   port_bsel(t, n));
        g_assert_cmphex(qtest_inl(t->qts, ACPI_PCIHP_ADDR_ICH9 +
                                  PCI_DOWN_BASE) & 1, ==, 1);
    }
}

/* VM */

/* @extra: more command line options, NULL for none */
static Test *test_start_extra(const Mode *mode, int nports, const char *extra)
{
    Test *t = g_new0(Test, 1);
    g_autoptr(GString) args = g_string_new(
        "-machine q35,memory-backend=m0 -nodefaults "
        "-object memory-backend-memfd,id=m0,size=256M,share=on "
        POLICY_ARGS);
    g_autoptr(GError) err = NULL;
    int n;

    g_assert_cmpint(nports, <=, MAX_PORTS);
    t->mode = mode;
    t->nports = nports;
    g_queue_init(&t->events);
    t->dir = g_dir_make_tmp("pcie-hotplug-passthru-XXXXXX", &err);
    g_assert_no_error(err);

    for (n = 1; n <= nports; n++) {
        g_string_append_printf(args, " -device pcie-hotplug-passthru,"
                               "id=%s,bus=pcie.0,chassis=%d,addr=0x%x",
                               PORT(n), n, 3 + n);
    }
    if (mode->native) {
        g_string_append(args, " " NATIVE_HOTPLUG);
    }
    if (extra) {
        g_string_append_printf(args, " %s", extra);
    }
    t->qts = qtest_init(args->str);
    qtest_qmp_set_event_callback(t->qts, event_cb, t);
    t->pcibus = qpci_new_pc(t->qts, NULL);

    /* What the firmware would do */
    for (n = 1; n <= nports; n++) {
        port_number_bus(t, n);
    }
    return t;
}

static Test *test_start(const Mode *mode, int nports)
{
    return test_start_extra(mode, nports, NULL);
}

static void test_end(Test *t)
{
    const char *name;
    QDict *ev;
    GDir *dir;
    int i;

    /* Every event of the test was expected */
    assert_no_hotplug_event(t);

    qpci_free_pc(t->pcibus);
    qtest_quit(t->qts);
    for (i = 0; i < MAX_SERVERS; i++) {
        server_stop(&t->srv[i]);
        g_free(t->srv[i].sock);
    }
    while ((ev = g_queue_pop_head(&t->events))) {
        qobject_unref(ev);
    }

    dir = g_dir_open(t->dir, 0, NULL);
    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *path = g_build_filename(t->dir, name, NULL);

        unlink(path);
    }
    g_dir_close(dir);
    rmdir(t->dir);
    g_free(t->dir);
    g_free(t);
}

/* Operations */

/* device_add of vfio-user-nvme @id on rp@n, exported by server @i */
static void add_start(Test *t, int n, int i, const char *id)
{
    qtest_qmp_device_add(t->qts, "vfio-user-nvme", id,
                         "{'bus': %s, 'socket': {'type': 'unix', "
                         "'path': %s}}", PORT(n), t->srv[i].sock);
    t->backend[n] = t->srv[i].sock;
    expect_hotplug_event(t, PORT(n), id, "add", "started", "qmp", NULL);
    check_port(t, n, "adding", id, "add");
}

static void add_finish(Test *t, int n, const char *id)
{
    guest_enable(t, n);
    expect_hotplug_event(t, PORT(n), id, "add", "completed", "qmp", NULL);
    check_port(t, n, "present", id, NULL);
}

static void hot_add(Test *t, int n, int i, const char *id)
{
    add_start(t, n, i, id);
    add_finish(t, n, id);
}

static void remove_start(Test *t, int n, const char *id)
{
    qtest_qmp_device_del_send(t->qts, id);
    expect_hotplug_event(t, PORT(n), id, "remove", "started", "qmp", NULL);
    check_port(t, n, "removing", id, "remove");
}

static void expect_removed(Test *t, int n, const char *id)
{
    expect_device_deleted(t, id);
    t->backend[n] = NULL;
    check_port(t, n, "empty", NULL, NULL);
}

static void expect_surprise_removal(Test *t, int n, const char *id,
                                    const char *cause, const char *reason)
{
    expect_hotplug_event(t, PORT(n), id, "surprise-remove", "started",
                         cause, reason);
    expect_hotplug_event(t, PORT(n), id, "surprise-remove", "completed",
                         cause, reason);
    expect_removed(t, n, id);
}

/* Arguments of device_add vfio-user-nvme @id on @bus, served by @i */
static QDict *nvme_args(Test *t, const char *bus, int i, const char *id)
{
    QDict *args = qdict_new();
    QDict *sock = qdict_new();

    qdict_put_str(sock, "type", "unix");
    qdict_put_str(sock, "path", t->srv[i].sock);
    qdict_put_str(args, "driver", "vfio-user-nvme");
    qdict_put_str(args, "id", id);
    qdict_put_str(args, "bus", bus);
    qdict_put(args, "socket", sock);
    return args;
}

static void assert_generic_error(QDict *err, const char *desc)
{
    g_assert_cmpstr(qdict_get_try_str(err, "class"), ==, "GenericError");
    g_assert_cmpstr(qdict_get_try_str(err, "desc"), ==, desc);
}

/* device_add with @args (reference taken) fails with @desc, silently */
static void device_add_refused(Test *t, QDict *args, const char *desc)
{
    g_autoptr(QDict) err = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'device_add', 'arguments': %p}", args);

    assert_generic_error(err, desc);
    assert_no_hotplug_event(t);
}

static void device_del_refused(Test *t, const char *id, const char *desc)
{
    g_autoptr(QDict) err = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'device_del', 'arguments': {'id': %s}}", id);

    assert_generic_error(err, desc);
    assert_no_hotplug_event(t);
}

/* Tests */

/* The query lists every port, empty, in the order they were created */
static void test_query(const void *data)
{
    const Mode *mode = data;
    Test *t = test_start(mode, 2);
    g_autoptr(QDict) resp = query(t);
    QDict *ret = qdict_get_qdict(resp, "return");

    g_assert_true(qdict_get_bool(ret, "enabled"));
    g_assert_cmpstr(qdict_get_try_str(ret, "hotplug-mode"), ==, mode->name);
    g_assert_cmpint(qdict_get_int(ret, "max-devices"), ==, 32);
    g_assert_cmpint(qdict_get_int(ret, "max-vcpus"), ==, 128);
    g_assert_cmpuint(qlist_size(qdict_get_qlist(ret, "ports")), ==, 2);
    port_info(resp, 1);
    port_info(resp, 2);
    check_port(t, 1, "empty", NULL, NULL);
    check_port(t, 2, "empty", NULL, NULL);
    test_end(t);
}

/*
 * Hot-add completes only when the guest driver has enabled the device:
 * memory space, bus mastering and MSI-X.
 */
static void test_add(const void *data)
{
    Test *t = test_start(data, 1);
    g_autofree QPCIDevice *dev = NULL;
    uint8_t msix;

    server_start(t, 0, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");

    if (t->mode->native) {
        slot_power(t, 1, true);
    }
    dev = nvme_dev(t, 1);
    qpci_config_writew(dev, PCI_COMMAND,
                       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    assert_no_hotplug_event(t);
    check_port(t, 1, "adding", "nvme0", "add");

    msix = qpci_find_capability(dev, PCI_CAP_ID_MSIX, 0);
    g_assert_cmpuint(msix, !=, 0);
    qpci_config_writew(dev, msix + PCI_MSIX_FLAGS,
                       qpci_config_readw(dev, msix + PCI_MSIX_FLAGS) |
                       PCI_MSIX_FLAGS_ENABLE);
    expect_hotplug_event(t, "rp1", "nvme0", "add", "completed", "qmp", NULL);
    check_port(t, 1, "present", "nvme0", NULL);
    test_end(t);
}

/* device_del waits for the guest's eject, then the device is gone */
static void test_remove_orderly(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    remove_start(t, 1, "nvme0");
    guest_eject(t, 1);
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "completed", "qmp",
                         NULL);
    expect_removed(t, 1, "nvme0");
    test_end(t);
}

/* With removal=surprise, device_del removes the device at once */
static void test_remove_surprise(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    qtest_qmp_device_del_send(t->qts, "nvme0");
    expect_surprise_removal(t, 1, "nvme0", "qmp",
                            "device_del on a port with removal=surprise");
    expect_guest_told_gone(t, 1);
    test_end(t);
}

/* The vfio-user server dies: QEMU removes the device by itself */
static void test_host_gone(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    server_kill(&t->srv[0]);
    expect_surprise_removal(t, 1, "nvme0", "host-gone",
                            "vfio-user server closed the connection");
    expect_guest_told_gone(t, 1);
    test_end(t);
}

/*
 * While a passthrough NVMe is attached, migration and snapshots are
 * refused with an error that names it; once it is gone, they are not.
 */
static void test_migration_blocked(const void *data)
{
    Test *t = test_start(data, 1);
    const char *msg = "passthrough NVMe 'nvme0' on port 'rp1' prevents "
                      "migration and snapshots: remove it first";
    g_autoptr(QDict) err = NULL;
    g_autoptr(QDict) resp = NULL;
    g_autofree char *out = NULL;

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");

    err = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'migrate', "
        "'arguments': {'uri': 'exec:cat >/dev/null'}}");
    assert_generic_error(err, msg);
    out = qtest_hmp(t->qts, "savevm snap0");
    g_assert_nonnull(strstr(out, msg));

    port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    qtest_qmp_device_del_send(t->qts, "nvme0");
    expect_surprise_removal(t, 1, "nvme0", "qmp",
                            "device_del on a port with removal=surprise");
    resp = qtest_qmp(t->qts, "{'execute': 'query-migrate'}");
    g_assert_false(qdict_haskey(resp, "error"));
    g_free(out);
    out = qtest_hmp(t->qts, "savevm snap0");
    g_assert_null(strstr(out, "prevents migration"));
    test_end(t);
}

/*
 * A VM holds at most 32 passthrough NVMe devices: with 32 ports full, a
 * 33rd device_add is refused, whatever port it names.
 */
static void test_33rd_device(const void *data)
{
    Test *t = g_new0(Test, 1);
    g_autoptr(GString) args = g_string_new(
        "-machine q35,memory-backend=m0 -nodefaults "
        "-object memory-backend-memfd,id=m0,size=128M,share=on "
        POLICY_ARGS);
    g_autoptr(GError) err = NULL;
    g_autoptr(QDict) query_resp = NULL;
    const QListEntry *e;
    int i, present = 0;

    t->mode = data;
    g_queue_init(&t->events);
    t->dir = g_dir_make_tmp("pcie-hotplug-passthru-XXXXXX", &err);
    g_assert_no_error(err);

    for (i = 0; i < MAX_SERVERS; i++) {
        server_start(t, i, SERVER_NVME);
    }
    for (i = 0; i < 32; i++) {
        g_string_append_printf(args,
            " -device pcie-hotplug-passthru,id=p%d,bus=pcie.0,chassis=%d,"
            "addr=%d.%d,multifunction=on"
            " -device '{\"driver\":\"vfio-user-nvme\",\"id\":\"n%d\","
            "\"bus\":\"p%d\",\"socket\":{\"type\":\"unix\","
            "\"path\":\"%s\"}}'",
            i, i + 1, 8 + i / 8, i % 8, i, i, t->srv[i].sock);
    }
    t->qts = qtest_init(args->str);
    qtest_qmp_set_event_callback(t->qts, event_cb, t);
    t->pcibus = qpci_new_pc(t->qts, NULL);

    query_resp = query(t);
    for (e = qlist_first(qdict_get_qlist(qdict_get_qdict(query_resp,
                                                         "return"),
                                         "ports"));
         e; e = qlist_next(e)) {
        QDict *port = qobject_to(QDict, qlist_entry_obj(e));

        present += !strcmp(qdict_get_str(port, "state"), "present");
    }
    g_assert_cmpint(present, ==, 32);

    device_add_refused(t, nvme_args(t, "p0", 32, "n32"),
                       "passthrough hotplug allows at most 32 passthrough "
                       "NVMe devices, and the VM has them");
    test_end(t);
}

/* The host device vanishes before the guest enabled it: the add fails */
static void test_host_gone_while_adding(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");
    server_kill(&t->srv[0]);
    expect_hotplug_event(t, PORT(1), "nvme0", "add", "failed", "host-gone",
                         "surprise removal before the guest enabled the "
                         "device: vfio-user server closed the connection");
    expect_surprise_removal(t, 1, "nvme0", "host-gone",
                            "vfio-user server closed the connection");
    test_end(t);
}

/*
 * An add the guest never completes (no driver, say) blocks every other
 * operation; device_del cuts it short as a surprise removal once the
 * port's removal is surprise.
 */
static void test_busy_adding_cut_short(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");
    device_del_refused(t, "nvme0", ERR_BUSY_ADD);

    port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    qtest_qmp_device_del_send(t->qts, "nvme0");
    expect_hotplug_event(t, PORT(1), "nvme0", "add", "failed", "qmp",
                         "surprise removal before the guest enabled the "
                         "device: device_del on a port with removal=surprise");
    expect_surprise_removal(t, 1, "nvme0", "qmp",
                            "device_del on a port with removal=surprise");
    expect_guest_told_gone(t, 1);
    test_end(t);
}

/* A guest that ignores device_del for unplug-timeout-ms loses the device */
static void test_remove_timeout(const void *data)
{
    Test *t = test_start(data, 1);
    g_autofree char *reason = g_strdup_printf(
        "the guest did not complete the removal within %d ms",
        UNPLUG_TIMEOUT_MS);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    port_set(t, 1, "unplug-timeout-ms", QOBJECT(qnum_from_int(
                 UNPLUG_TIMEOUT_MS)));
    remove_start(t, 1, "nvme0");

    /* Not yet... */
    qtest_clock_step(t->qts, MS_TO_NS(UNPLUG_TIMEOUT_MS / 2));
    assert_no_hotplug_event(t);
    check_port(t, 1, "removing", "nvme0", "remove");

    /* ...now */
    qtest_clock_step(t->qts, MS_TO_NS(300));
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "failed", "timeout",
                         REASON_ANY);
    expect_surprise_removal(t, 1, "nvme0", "timeout", reason);
    test_end(t);
}

/* removal=surprise on a port with a pending removal completes it at once */
static void test_remove_escalate(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    remove_start(t, 1, "nvme0");
    port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "failed", "qmp",
                         REASON_ANY);
    expect_surprise_removal(t, 1, "nvme0", "qmp", REASON_ANY);
    test_end(t);
}

/* While an add is pending, other plug and unplug requests are refused */
static void test_busy_adding(const void *data)
{
    Test *t = test_start(data, 2);

    server_start(t, 0, SERVER_NVME);
    server_start(t, 1, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");

    device_add_refused(t, nvme_args(t, "rp2", 1, "nvme1"), ERR_BUSY_ADD);
    device_del_refused(t, "nvme0", ERR_BUSY_ADD);
    check_port(t, 1, "adding", "nvme0", "add");
    check_port(t, 2, "empty", NULL, NULL);

    add_finish(t, 1, "nvme0");
    test_end(t);
}

/* While a removal is pending, other unplug requests are refused */
static void test_busy_removing(const void *data)
{
    Test *t = test_start(data, 2);

    server_start(t, 0, SERVER_NVME);
    server_start(t, 1, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    hot_add(t, 2, 1, "nvme1");
    remove_start(t, 1, "nvme0");

    device_del_refused(t, "nvme1", ERR_BUSY_REMOVE);
    check_port(t, 1, "removing", "nvme0", "remove");
    check_port(t, 2, "present", "nvme1", NULL);

    guest_eject(t, 1);
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "completed", "qmp",
                         NULL);
    expect_removed(t, 1, "nvme0");

    /* The refused removal can be asked again */
    remove_start(t, 2, "nvme1");
    guest_eject(t, 2);
    expect_hotplug_event(t, "rp2", "nvme1", "remove", "completed", "qmp",
                         NULL);
    expect_removed(t, 2, "nvme1");
    test_end(t);
}

/* The port takes only the passthrough NVMe frontends */
static void test_refuse_other_device(const void *data)
{
    Test *t = test_start(data, 1);
    QDict *args = qdict_new();

    qdict_put_str(args, "driver", "e1000e");
    qdict_put_str(args, "id", "nic0");
    qdict_put_str(args, "bus", "rp1");
    device_add_refused(t, args,
                       "pcie-hotplug-passthru port 'rp1' accepts only "
                       "vfio-nvme and vfio-user-nvme devices, not 'e1000e'");
    check_port(t, 1, "empty", NULL, NULL);
    test_end(t);
}

/* A vfio-user-nvme whose server exports something else is refused */
static void test_refuse_wrong_class(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NIC);
    device_add_refused(t, nvme_args(t, "rp1", 0, "nvme0"),
                       "vfio-user-nvme 'nvme0': class code 02:00:00 is not "
                       "an NVMe controller (01:08:02)");
    check_port(t, 1, "empty", NULL, NULL);
    test_end(t);
}

/* The frontend does not let the user override the device's identity */
static void test_refuse_identity_override(const void *data)
{
    static const struct {
        const char *property;
        int value;
    } overrides[] = {
        { "x-pci-class-code", 0x010802 },
        { "x-pci-vendor-id", 0x1b36 },
        { "x-pci-device-id", 0x0010 },
        { "x-pci-sub-vendor-id", 0x1af4 },
        { "x-pci-sub-device-id", 0x1100 },
    };
    Test *t = test_start(data, 1);
    int i;

    G_STATIC_ASSERT(ARRAY_SIZE(overrides) <= MAX_SERVERS);
    for (i = 0; i < ARRAY_SIZE(overrides); i++) {
        g_autofree char *desc = g_strdup_printf(
            "vfio-user-nvme 'nvme0': property '%s' is not allowed: "
            "a passthrough NVMe device keeps its own identity",
            overrides[i].property);
        QDict *args;

        /* A fresh server, in case the refused client had connected */
        server_start(t, i, SERVER_NVME);
        args = nvme_args(t, "rp1", i, "nvme0");
        qdict_put_int(args, overrides[i].property, overrides[i].value);
        device_add_refused(t, args, desc);
        check_port(t, 1, "empty", NULL, NULL);
    }
    test_end(t);
}

/* The frontend is not hot-plugged into an ordinary root port */
static void test_refuse_plain_port(const void *data)
{
    Test *t = test_start_extra(data, 1, "-device pcie-root-port,id=rpx,"
                               "bus=pcie.0,chassis=9,addr=0x9");

    server_start(t, 0, SERVER_NVME);
    device_add_refused(t, nvme_args(t, "rpx", 0, "nvme0"), ERR_OUTSIDE_PORT);
    check_port(t, 1, "empty", NULL, NULL);
    test_end(t);
}

/* Run QEMU with -device @device until it exits; return its stderr */
static char *run_qemu_with(const Mode *mode, const char *device,
                           int *status)
{
    const char *argv[] = {
        qtest_qemu_binary(NULL),
        "-machine", "q35,memory-backend=m0", "-nodefaults",
        "-display", "none", "-accel", "qtest",
        "-object", "memory-backend-memfd,id=m0,size=256M,share=on",
        "-device", device,
        mode->native ? "-global" : NULL,
        "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
        NULL
    };
    g_autoptr(GError) err = NULL;
    g_autofree char *out = NULL;
    char *errout = NULL;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
                               NULL, NULL, &out, &errout, status, &err));
    g_assert_no_error(err);
    return errout;
}

/*
 * Nor cold-plugged onto pcie.0: QEMU refuses to start.  (pcie.0 takes no
 * hotplug at all, so device_add there fails before the frontend is asked)
 */
static void test_refuse_root_bus(const void *data)
{
    Test t = { .mode = data };
    g_autoptr(GError) err = NULL;
    g_autofree char *device = NULL;
    g_autofree char *errout = NULL;
    int status;

    t.dir = g_dir_make_tmp("pcie-hotplug-passthru-XXXXXX", &err);
    g_assert_no_error(err);
    server_start(&t, 0, SERVER_NVME);
    device = g_strdup_printf(
        "{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
        "\"bus\":\"pcie.0\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}",
        t.srv[0].sock);

    errout = run_qemu_with(t.mode, device, &status);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_assert_nonnull(strstr(errout, ": " ERR_OUTSIDE_PORT "\n"));

    server_stop(&t.srv[0]);
    unlink(t.srv[0].sock);
    g_free(t.srv[0].sock);
    rmdir(t.dir);
    g_free(t.dir);
}

/* vfio-nvme of a host device that does not exist fails, and only that */
static void vfio_nvme_missing(const Mode *mode, const char *property,
                              const char *value)
{
    Test *t = test_start(mode, 1);
    g_autoptr(QDict) err = NULL;
    QDict *args = qdict_new();

    qdict_put_str(args, "driver", "vfio-nvme");
    qdict_put_str(args, "id", "v0");
    qdict_put_str(args, "bus", "rp1");
    qdict_put_str(args, property, value);
    err = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'device_add', 'arguments': %p}", args);
    g_assert_cmpstr(qdict_get_try_str(err, "class"), ==, "GenericError");
    g_assert_nonnull(strstr(qdict_get_try_str(err, "desc"),
                            "vfio-nvme 'v0'"));

    g_assert_true(qtest_probe_child(t->qts));
    assert_no_hotplug_event(t);
    check_port(t, 1, "empty", NULL, NULL);
    test_end(t);
}

static void test_vfio_nvme_missing_host(const void *data)
{
    vfio_nvme_missing(data, "host", "0000:99:00.0");
}

static void test_vfio_nvme_missing_sysfsdev(const void *data)
{
    vfio_nvme_missing(data, "sysfsdev", "/sys/bus/pci/devices/0000:99:00.0");
}

/*
 * After a surprise removal the slot takes no new device until the guest
 * has acknowledged the removal: ACPI with B0EJ, native by turning the
 * slot's power and then its power indicator off.  A device plugged
 * before that would be ejected by the guest as the old one.
 */
static void test_surprise_ack(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    qtest_qmp_device_del_send(t->qts, "nvme0");
    expect_surprise_removal(t, 1, "nvme0", "qmp",
                            "device_del on a port with removal=surprise");

    server_start(t, 1, SERVER_NVME);
    device_add_refused(t, nvme_args(t, "rp1", 1, "nvme0"),
                       "port 'rp1': the guest has not yet acknowledged the "
                       "removal of the previous device");
    check_port(t, 1, "empty", NULL, NULL);

    if (t->mode->native) {
        /* pciehp: power off, and a second later the indicator off */
        g_autofree QPCIDevice *port = port_dev(t, 1);
        uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);
        uint16_t ctl = qpci_config_readw(port, exp + PCI_EXP_SLTCTL);

        ctl &= ~PCI_EXP_SLTCTL_PCC;
        qpci_config_writew(port, exp + PCI_EXP_SLTCTL,
                           ctl | PCI_EXP_SLTCTL_PWR_OFF);
        device_add_refused(t, nvme_args(t, "rp1", 1, "nvme0"),
                           "port 'rp1': the guest has not yet acknowledged "
                           "the removal of the previous device");
        slot_power(t, 1, false);
    } else {
        acpi_eject(t, 1);
    }
    server_start(t, 2, SERVER_NVME);
    hot_add(t, 1, 2, "nvme0");
    test_end(t);
}

static void add_test(const Mode *mode, const char *name,
                     void (*fn)(const void *))
{
    g_autofree char *path = g_strdup_printf("/pcie-hotplug-passthru/%s/%s",
                                            mode->name, name);

    qtest_add_data_func(path, mode, fn);
}

int main(int argc, char **argv)
{
    static const Mode modes[] = {
        { .name = "acpi", .native = false },
        { .name = "native", .native = true },
    };
    int i;

    g_test_init(&argc, &argv, NULL);

    for (i = 0; i < ARRAY_SIZE(modes); i++) {
        const Mode *m = &modes[i];

        add_test(m, "query/lists-ports-in-creation-order", test_query);
        add_test(m, "add/completes-when-guest-enables-device", test_add);
        add_test(m, "remove/orderly/completes-when-guest-ejects",
                 test_remove_orderly);
        add_test(m, "remove/surprise/needs-no-guest", test_remove_surprise);
        add_test(m, "remove/timeout/escalates-to-surprise",
                 test_remove_timeout);
        add_test(m, "remove/qom-set-surprise/escalates-pending-removal",
                 test_remove_escalate);
        add_test(m, "surprise/host-gone/removes-device", test_host_gone);
        add_test(m, "surprise/host-gone/while-adding-fails-the-add",
                 test_host_gone_while_adding);
        add_test(m, "surprise/slot-waits-for-guest-ack", test_surprise_ack);
        add_test(m, "busy/adding/refuses-other-operations",
                 test_busy_adding);
        add_test(m, "busy/adding/surprise-removal-cuts-add-short",
                 test_busy_adding_cut_short);
        add_test(m, "policy/migration-and-snapshots-blocked-while-attached",
                 test_migration_blocked);
        add_test(m, "busy/removing/refuses-other-operations",
                 test_busy_removing);
        add_test(m, "refuse/non-nvme-frontend", test_refuse_other_device);
        add_test(m, "refuse/server-device-not-nvme",
                 test_refuse_wrong_class);
        add_test(m, "refuse/identity-override",
                 test_refuse_identity_override);
        add_test(m, "refuse/frontend-in-ordinary-root-port",
                 test_refuse_plain_port);
        add_test(m, "refuse/frontend-on-pcie0", test_refuse_root_bus);
        add_test(m, "vfio-nvme/missing-host-fails-cleanly",
                 test_vfio_nvme_missing_host);
        add_test(m, "vfio-nvme/missing-sysfsdev-fails-cleanly",
                 test_vfio_nvme_missing_sysfsdev);
    }
    add_test(&modes[0], "policy/at-most-32-devices", test_33rd_device);


    return g_test_run();
}
