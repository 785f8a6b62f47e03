/*
 * Test harness for NVMe passthrough hotplug qtests (see harness.h)
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
#include "harness.h"

const Mode modes[N_MODES] = {
    { .name = "acpi", .native = false },
    { .name = "native", .native = true },
};

const char REASON_ANY[] = "<any reason>";
const char *const port_ids[MAX_PORTS + 1] = { NULL, "rp1", "rp2" };

/* vfio-user server: the "host NVMe" */

static void server_child_setup(gpointer unused)
{
#ifdef CONFIG_LINUX
    /* Do not outlive a test that fails half-way */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
}

bool server_exited(Server *s)
{
    int status;

    if (s->running && waitpid(s->pid, &status, WNOHANG) == s->pid) {
        s->running = false;
    }
    return !s->running;
}

/*
 * The server at @path takes connections.  Its socket file appears at
 * bind(), a moment before listen(): a client that connects in between
 * is refused.  /proc/net/unix flags a listening socket with
 * __SO_ACCEPTCON (0x10000).
 */
static bool server_listening(const char *path)
{
    g_autofree char *table = NULL;
    g_autofree char *suffix = g_strconcat(" ", path, NULL);
    g_auto(GStrv) lines = NULL;
    unsigned long flags;
    char **l;

    if (!g_file_get_contents("/proc/net/unix", &table, NULL, NULL)) {
        return g_file_test(path, G_FILE_TEST_EXISTS);
    }
    lines = g_strsplit(table, "\n", -1);
    for (l = lines; *l; l++) {
        if (g_str_has_suffix(*l, suffix) &&
            sscanf(*l, "%*s %*s %*s %lx", &flags) == 1 &&
            (flags & 0x10000)) {
            return true;
        }
    }
    return false;
}

void server_start(Test *t, int i, ServerKind kind)
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
        g_ptr_array_add(argv, (char *)"nvme,id=nvme0,serial=" SERVER_SERIAL
                                    ",drive=d0");
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
    while (!server_listening(s->sock)) {
        g_assert_false(server_exited(s));
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

/* The host loses the device: the server dies without a word */
void server_kill(Server *s)
{
    g_assert_true(s->running);
    g_assert_cmpint(kill(s->pid, SIGKILL), ==, 0);
    g_assert_cmpint(waitpid(s->pid, NULL, 0), ==, s->pid);
    s->running = false;
}

/*
 * Wait for server @s to exit by itself, as it does when its client
 * hangs up; false if it has not within TIMEOUT_US
 */
bool server_wait_exit(Server *s)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    while (!server_exited(s)) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        g_usleep(5 * 1000);
    }
    return true;
}

void server_stop(Server *s)
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

bool event_cb(QTestState *qts, const char *name, QDict *event,
                     void *opaque)
{
    Test *t = opaque;

    g_queue_push_tail(&t->events, qobject_ref(event));
    return true;
}

/* Remove and return the oldest queued event called @name, or NULL */
QDict *event_take(Test *t, const char *name)
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
void events_sync(Test *t)
{
    qobject_unref(qtest_qmp(t->qts, "{'execute': 'query-status'}"));
}

/*
 * Wait at most TIMEOUT_US for the next event called @name.  Unlike
 * qtest_qmp_eventwait_ref(), this keeps the events of other names, so
 * that DEVICE_DELETED may come before or after PASSTHRU_HOTPLUG.
 */
QDict *event_wait(Test *t, const char *name)
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
void expect_hotplug_event(Test *t, const char *port,
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

void expect_device_deleted(Test *t, const char *id)
{
    g_autoptr(QDict) ev = event_wait(t, "DEVICE_DELETED");

    g_assert_cmpstr(qdict_get_try_str(qdict_get_qdict(ev, "data"),
                                      "device"), ==, id);
}

/* A refused operation emitted no event */
void assert_no_hotplug_event(Test *t)
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

QDict *query(Test *t)
{
    QDict *resp = qtest_qmp(t->qts, "{'execute': 'query-passthru-hotplug'}");

    g_assert_true(qdict_haskey(resp, "return"));
    return resp;
}

/* Port rp@n in the answer @resp of query() */
QDict *port_info(QDict *resp, int n)
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
void check_port(Test *t, int n, const char *state, const char *id,
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

void port_set(Test *t, int n, const char *property, QObject *value)
{
    g_autofree char *path = g_strdup_printf("/machine/peripheral/%s",
                                            PORT(n));

    qtest_qmp_assert_success(t->qts,
                             "{'execute': 'qom-set', 'arguments': {"
                             "'path': %s, 'property': %s, 'value': %p}}",
                             path, property, value);
}

/* The guest: config space, ACPI PCI hotplug, PCIe Slot Control */

QPCIDevice *port_dev(Test *t, int n)
{
    QPCIDevice *port = qpci_device_find(t->pcibus, QPCI_DEVFN(3 + n, 0));

    g_assert_nonnull(port);
    return port;
}

/* Device 0 on the secondary bus of rp@n; the PC bus takes bus << 8 */
QPCIDevice *nvme_dev(Test *t, int n)
{
    QPCIDevice *dev = qpci_device_find(t->pcibus, QPCI_DEVFN(n << 5, 0));

    g_assert_nonnull(dev);
    return dev;
}

void port_number_bus(Test *t, int n)
{
    g_autofree QPCIDevice *port = port_dev(t, n);

    qpci_config_writeb(port, PCI_PRIMARY_BUS, 0);
    qpci_config_writeb(port, PCI_SECONDARY_BUS, n);
    qpci_config_writeb(port, PCI_SUBORDINATE_BUS, n);
}

/* Native hotplug: switch the slot's power and power indicator */
void slot_power(Test *t, int n, bool on)
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
int port_bsel(Test *t, int n)
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
void acpi_eject(Test *t, int n)
{
    qtest_outl(t->qts, ACPI_PCIHP_ADDR_ICH9 + PCI_SEL_BASE, port_bsel(t, n));
    qtest_outl(t->qts, ACPI_PCIHP_ADDR_ICH9 + PCI_EJ_BASE, 1);
}

/* The guest driver takes the controller on rp@n into use */
void guest_enable(Test *t, int n)
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
void guest_eject(Test *t, int n)
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
void expect_guest_told_gone(Test *t, int n)
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

/*
 * The guest, told that the device on rp@n is gone, lets go of the slot
 * (ACPI B0EJ, native slot power off): the port takes a device again.
 */
void guest_ack_gone(Test *t, int n)
{
    expect_guest_told_gone(t, n);
    if (t->mode->native) {
        slot_power(t, n, false);
    } else {
        acpi_eject(t, n);
    }
}

/* VM */

/* A VM the policy admits, with @mem of shared memory for vfio-user */
#define VM_ARGS(mem) \
    "-machine q35,memory-backend=m0 -nodefaults " \
    "-object memory-backend-memfd,id=m0,size=" mem ",share=on " POLICY_ARGS

/* @extra: more command line options, NULL for none */
Test *test_start_extra(const Mode *mode, int nports, const char *extra)
{
    Test *t = test_new();
    g_autoptr(GString) args = g_string_new(VM_ARGS("256M"));
    int n;

    g_assert_cmpint(nports, <=, MAX_PORTS);
    t->mode = mode;
    t->nports = nports;

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

Test *test_start(const Mode *mode, int nports)
{
    return test_start_extra(mode, nports, NULL);
}

/*
 * A VM with its 32 passthrough devices: ports p0..p31, each holding
 * vfio-user-nvme nN served by server N; server 32 is left for a 33rd.
 */
Test *test_start_full(const Mode *mode)
{
    Test *t = test_new();
    g_autoptr(GString) args = g_string_new(VM_ARGS("128M"));
    int i;

    t->mode = mode;
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
    return t;
}

/* A test folder for servers, without a QEMU: for command lines */
Test *test_new(void)
{
    Test *t = g_new0(Test, 1);
    g_autoptr(GError) err = NULL;

    g_queue_init(&t->events);
    t->dir = g_dir_make_tmp("pcie-hotplug-passthru-XXXXXX", &err);
    g_assert_no_error(err);
    return t;
}

void test_end(Test *t)
{
    /* Every event of the test was expected */
    assert_no_hotplug_event(t);

    qpci_free_pc(t->pcibus);
    qtest_quit(t->qts);
    test_free(t);
}

/* Stop the servers, and remove the folder */
void test_free(Test *t)
{
    const char *name;
    QDict *ev;
    GDir *dir;
    int i;

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

/* device_add @args (nvme_args() of port @n, server @i, @id, and more) */
void add_start_args(Test *t, int n, int i, const char *id, QDict *args)
{
    qtest_qmp_assert_success(t->qts, "{'execute': 'device_add', "
                             "'arguments': %p}", args);
    t->backend[n] = t->srv[i].sock;
    expect_hotplug_event(t, PORT(n), id, "add", "started", "qmp", NULL);
    check_port(t, n, "adding", id, "add");
}

/* device_add of vfio-user-nvme @id on rp@n, exported by server @i */
void add_start(Test *t, int n, int i, const char *id)
{
    add_start_args(t, n, i, id, nvme_args(t, PORT(n), i, id));
}

void add_finish(Test *t, int n, const char *id)
{
    guest_enable(t, n);
    expect_hotplug_event(t, PORT(n), id, "add", "completed", "qmp", NULL);
    check_port(t, n, "present", id, NULL);
}

void hot_add(Test *t, int n, int i, const char *id)
{
    add_start(t, n, i, id);
    add_finish(t, n, id);
}

void remove_start(Test *t, int n, const char *id)
{
    qtest_qmp_device_del_send(t->qts, id);
    expect_hotplug_event(t, PORT(n), id, "remove", "started", "qmp", NULL);
    check_port(t, n, "removing", id, "remove");
}

/* The guest ejects the device whose removal is pending: it is gone */
void remove_finish(Test *t, int n, const char *id)
{
    guest_eject(t, n);
    expect_hotplug_event(t, PORT(n), id, "remove", "completed", "qmp", NULL);
    expect_removed(t, n, id);
}

/* device_del of @id on rp@n, and the guest agrees: an orderly removal */
void remove_orderly(Test *t, int n, const char *id)
{
    remove_start(t, n, id);
    remove_finish(t, n, id);
}

/* device_del of @id on rp@n, whose port has removal=surprise */
void remove_surprise(Test *t, int n, const char *id)
{
    qtest_qmp_device_del_send(t->qts, id);
    expect_surprise_removal(t, n, id, "qmp",
                            "device_del on a port with removal=surprise");
}

void expect_removed(Test *t, int n, const char *id)
{
    expect_device_deleted(t, id);
    t->backend[n] = NULL;
    check_port(t, n, "empty", NULL, NULL);
}

void expect_surprise_removal(Test *t, int n, const char *id,
                             const char *cause, const char *reason)
{
    expect_hotplug_event(t, PORT(n), id, "surprise-remove", "started",
                         cause, reason);
    expect_hotplug_event(t, PORT(n), id, "surprise-remove", "completed",
                         cause, reason);
    expect_removed(t, n, id);
}

/* Arguments of device_add vfio-user-nvme @id on @bus, served by @i */
QDict *nvme_args(Test *t, const char *bus, int i, const char *id)
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

void assert_generic_error(QDict *err, const char *desc)
{
    g_assert_cmpstr(qdict_get_try_str(err, "class"), ==, "GenericError");
    g_assert_cmpstr(qdict_get_try_str(err, "desc"), ==, desc);
}

/* device_add with @args (reference taken) fails with @desc, silently */
void device_add_refused(Test *t, QDict *args, const char *desc)
{
    g_autoptr(QDict) err = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'device_add', 'arguments': %p}", args);

    assert_generic_error(err, desc);
    assert_no_hotplug_event(t);
}

void device_del_refused(Test *t, const char *id, const char *desc)
{
    g_autoptr(QDict) err = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'device_del', 'arguments': {'id': %s}}", id);

    assert_generic_error(err, desc);
    assert_no_hotplug_event(t);
}

/*
 * Run QEMU with the extra options @args (shell syntax) until it exits;
 * return its stderr
 */
char *run_qemu_with(const Mode *mode, const char *args, int *status)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_auto(GStrv) extra = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *out = NULL;
    char *errout = NULL;
    char **a;

    g_assert_true(g_shell_parse_argv(args, NULL, &extra, &err));
    g_assert_no_error(err);
    g_ptr_array_add(argv, (char *)qtest_qemu_binary(NULL));
    g_ptr_array_add(argv, (char *)"-machine");
    g_ptr_array_add(argv, (char *)"q35,memory-backend=m0");
    g_ptr_array_add(argv, (char *)"-nodefaults");
    g_ptr_array_add(argv, (char *)"-display");
    g_ptr_array_add(argv, (char *)"none");
    g_ptr_array_add(argv, (char *)"-accel");
    g_ptr_array_add(argv, (char *)"qtest");
    g_ptr_array_add(argv, (char *)"-object");
    g_ptr_array_add(argv,
                    (char *)"memory-backend-memfd,id=m0,size=256M,share=on");
    if (mode->native) {
        g_ptr_array_add(argv, (char *)"-global");
        g_ptr_array_add(argv, (char *)NATIVE_HOTPLUG_GLOBAL);
    }
    for (a = extra; *a; a++) {
        g_ptr_array_add(argv, *a);
    }
    g_ptr_array_add(argv, NULL);

    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL,
                               G_SPAWN_DEFAULT, NULL, NULL, &out, &errout,
                               status, &err));
    g_assert_no_error(err);
    return errout;
}

void add_test(const Mode *mode, const char *name,
                     void (*fn)(const void *))
{
    g_autofree char *path = g_strdup_printf("/pcie-hotplug-passthru/%s/%s",
                                            mode->name, name);

    qtest_add_data_func(path, mode, fn);
}
