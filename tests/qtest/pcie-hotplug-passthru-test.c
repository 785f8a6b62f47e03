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
#include "nvme-passthru/harness.h"

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
    remove_orderly(t, 1, "nvme0");
    test_end(t);
}

/* With removal=surprise, device_del removes the device at once */
static void test_remove_surprise(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    remove_surprise(t, 1, "nvme0");
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
    remove_surprise(t, 1, "nvme0");
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
    Test *t = test_start_full(data);
    g_autoptr(QDict) query_resp = NULL;
    const QListEntry *e;
    int present = 0;

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

/* Start a hot-add on rp1 whose requests time out after STALL_MS */
#define STALL_MS 300

static void add_start_stallable(Test *t)
{
    QDict *args;

    server_start(t, 0, SERVER_NVME);
    args = nvme_args(t, PORT(1), 0, "nvme0");
    qdict_put_int(args, "x-msg-timeout", STALL_MS);
    add_start_args(t, 1, 0, "nvme0", args);
}

/* A config read the device answers (Device Control): a round trip */
static void read_from_device(Test *t)
{
    g_autofree QPCIDevice *dev = nvme_dev(t, 1);
    uint8_t exp = qpci_find_capability(dev, PCI_CAP_ID_EXP, 0);

    g_assert_cmpuint(exp, !=, 0);
    qpci_config_readw(dev, exp + PCI_EXP_DEVCTL);
}

/*
 * The vfio-user server stops answering (stopped, not dead): the first
 * request that gets no reply within x-msg-timeout ends it, and QEMU
 * removes the device as if the server had gone, where it used to wait as
 * long again at every request that followed, with the BQL held.
 */
static void test_host_stalls(const void *data)
{
    Test *t = test_start(data, 1);
    g_autofree char *reason = g_strdup_printf(
        "vfio-user server did not answer in %d ms", STALL_MS);

    add_start_stallable(t);
    add_finish(t, 1, "nvme0");

    g_assert_cmpint(kill(t->srv[0].pid, SIGSTOP), ==, 0);
    read_from_device(t);
    expect_surprise_removal(t, 1, "nvme0", "host-gone", reason);
    expect_guest_told_gone(t, 1);
    g_assert_cmpint(kill(t->srv[0].pid, SIGCONT), ==, 0);
    test_end(t);
}

/*
 * The guest sets up a vfio-user device's interrupts without waiting for
 * the server (patches/0040): a server that stalls while the guest turns
 * MSI-X on is not held against the guest, and the device stays.  Each
 * SET_IRQS used to wait for its reply with the BQL held, until
 * x-msg-timeout ended the wait as the server gone.  Once the server runs
 * again it answers, and the device is still present.
 */
static void test_host_stalls_irq_setup(const void *data)
{
    Test *t = test_start(data, 1);

    add_start_stallable(t);
    g_assert_cmpint(kill(t->srv[0].pid, SIGSTOP), ==, 0);
    /* memory, bus master, MSI-X on: INTx off and MSI-X on, at the server */
    add_finish(t, 1, "nvme0");
    g_assert_cmpint(kill(t->srv[0].pid, SIGCONT), ==, 0);

    read_from_device(t);
    events_sync(t);
    check_port(t, 1, "present", "nvme0", NULL);
    test_end(t);
}

/*
 * An add the guest never completes (no driver, say) blocks every other
 * operation.  device_del of the device cancels it, in either removal
 * mode: the add fails, and the device is taken away at once.
 */
static void test_add_cancel(const void *data, const char *removal)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    port_set(t, 1, "removal", QOBJECT(qstring_from_str(removal)));
    add_start(t, 1, 0, "nvme0");
    qtest_qmp_device_del_send(t->qts, "nvme0");
    expect_hotplug_event(t, PORT(1), "nvme0", "add", "failed", "qmp",
                         "surprise removal before the guest enabled the "
                         "device: device_del cancelled the add");
    expect_surprise_removal(t, 1, "nvme0", "qmp",
                            "device_del cancelled the add");
    /* Once the guest has let go of the slot, it takes the next add */
    guest_ack_gone(t, 1);
    server_start(t, 1, SERVER_NVME);
    hot_add(t, 1, 1, "nvme1");
    test_end(t);
}

static void test_add_cancel_orderly(const void *data)
{
    test_add_cancel(data, "orderly");
}

static void test_add_cancel_surprise(const void *data)
{
    test_add_cancel(data, "surprise");
}

/*
 * An add the guest has not completed after add-timeout-ms (30 s by
 * default, on the VM clock) fails, and the device is taken away.
 */
static void test_add_timeout(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");

    /* Not yet... */
    qtest_clock_step(t->qts, MS_TO_NS(30000 - 1));
    assert_no_hotplug_event(t);
    check_port(t, 1, "adding", "nvme0", "add");

    /* ...now */
    qtest_clock_step(t->qts, MS_TO_NS(1));
    expect_hotplug_event(t, PORT(1), "nvme0", "add", "failed", "timeout",
                         "surprise removal before the guest enabled the "
                         "device: the guest did not enable the device "
                         "within 30000 ms");
    expect_surprise_removal(t, 1, "nvme0", "timeout",
                            "the guest did not enable the device within "
                            "30000 ms");
    expect_guest_told_gone(t, 1);
    test_end(t);
}

/*
 * A changed add-timeout-ms counts from the add's start; 0 waits forever;
 * an add the guest has completed is not timed any more.
 */
static void test_add_timeout_changed(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");
    qtest_clock_step(t->qts, MS_TO_NS(1000));
    port_set(t, 1, "add-timeout-ms", QOBJECT(qnum_from_int(1500)));
    qtest_clock_step(t->qts, MS_TO_NS(499));
    assert_no_hotplug_event(t);
    port_set(t, 1, "add-timeout-ms", QOBJECT(qnum_from_int(0)));
    qtest_clock_step(t->qts, MS_TO_NS(120 * 1000));
    assert_no_hotplug_event(t);
    check_port(t, 1, "adding", "nvme0", "add");

    port_set(t, 1, "add-timeout-ms", QOBJECT(qnum_from_int(200 * 1000)));
    add_finish(t, 1, "nvme0");
    port_set(t, 1, "add-timeout-ms", QOBJECT(qnum_from_int(1)));
    qtest_clock_step(t->qts, MS_TO_NS(1000));
    assert_no_hotplug_event(t);
    check_port(t, 1, "present", "nvme0", NULL);

    /* The next add: 1 ms, counted from its start */
    remove_orderly(t, 1, "nvme0");
    server_start(t, 1, SERVER_NVME);
    add_start(t, 1, 1, "nvme1");
    qtest_clock_step(t->qts, MS_TO_NS(1));
    expect_hotplug_event(t, PORT(1), "nvme1", "add", "failed", "timeout",
                         REASON_ANY);
    expect_surprise_removal(t, 1, "nvme1", "timeout",
                            "the guest did not enable the device within "
                            "1 ms");
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

    remove_finish(t, 1, "nvme0");

    /* The refused removal can be asked again */
    remove_orderly(t, 2, "nvme1");
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
                       "vfio-pci, vfio-nvme and vfio-user-nvme devices, "
                       "not 'e1000e'");
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
        "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
        "\"bus\":\"pcie.0\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}'",
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
    remove_surprise(t, 1, "nvme0");

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

/*
 * A port holds one device, at 0.0.  A frontend cold-plugged elsewhere on
 * it, alone or beside one at 0.0, stops QEMU with a clear error (QEMU
 * used to crash at the first device_del).
 */
static void cold_plug_refused(const Mode *mode, const char *devices,
                              const char *msg)
{
    g_autofree char *args = g_strdup_printf(
        "-device pcie-hotplug-passthru,id=rp1,bus=pcie.0,chassis=1,addr=0x4 "
        "%s", devices);
    g_autofree char *errout = NULL;
    int status;

    errout = run_qemu_with(mode, args, &status);
    g_test_message("stderr: %s", errout);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_assert_nonnull(strstr(errout, msg));
}

#define FRONTEND_JSON(id, addr, path) \
    "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"" id "\"," \
    "\"bus\":\"rp1\",\"addr\":\"" addr "\"," \
    "\"socket\":{\"type\":\"unix\",\"path\":\"" path "\"}}'"

static void test_refuse_cold_function(const void *data)
{
    cold_plug_refused(data, FRONTEND_JSON("nvme0", "0.1", "/nonexistent"),
                      ": vfio-user-nvme 'nvme0' must be at address 0.0 of "
                      "port 'rp1', not 0.1: a port holds one device\n");
}

static void test_refuse_cold_two_functions(const void *data)
{
    Test *t = test_new();
    g_autofree char *devices = NULL;

    server_start(t, 0, SERVER_NVME);
    devices = g_strdup_printf(
        "-device '{\"driver\":\"vfio-user-nvme\",\"id\":\"nvme0\","
        "\"bus\":\"rp1\",\"addr\":\"0.0\",\"multifunction\":true,"
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}' "
        FRONTEND_JSON("nvme1", "0.1", "/nonexistent"), t->srv[0].sock);
    /* The port sees the second device before it is realized, either mode */
    cold_plug_refused(data, devices,
                      ": vfio-user-nvme 'nvme1' must be at address 0.0 of "
                      "port 'rp1', not 0.1: a port holds one device\n");
    test_free(t);
}

/*
 * A device_add at another address of the port is refused before the
 * guest hears of it, and leaves nothing pending behind: the port takes
 * a device at 0.0 afterwards.
 */
static void test_refuse_hot_function(const void *data)
{
    static const struct {
        const char *addr;
        bool multifunction;
        const char *where;
    } addrs[] = {
        { "0x1", false, "1.0" },
        { "0.1", true, "0.1" },
        { "0.7", false, "0.7" },
        { "0x1f.0", false, "1f.0" },
    };
    Test *t = test_start(data, 1);
    int i;

    server_start(t, 0, SERVER_NVME);
    for (i = 0; i < ARRAY_SIZE(addrs); i++) {
        g_autofree char *desc = g_strdup_printf(
            "vfio-user-nvme 'nvme0' must be at address 0.0 of port 'rp1', "
            "not %s: a port holds one device", addrs[i].where);
        QDict *args = nvme_args(t, "rp1", 0, "nvme0");

        qdict_put_str(args, "addr", addrs[i].addr);
        if (addrs[i].multifunction) {
            qdict_put_bool(args, "multifunction", true);
        }
        device_add_refused(t, args, desc);
        check_port(t, 1, "empty", NULL, NULL);
    }
    hot_add(t, 1, 0, "nvme0");
    test_end(t);
}

/* Ids that device_del could not name are refused */
static void test_refuse_bad_id(const void *data)
{
    static const char *const ids[] = {
        "", " ", "nvme 0", "nvme/0", "nvme\"0", "nvme'0", "0nvme", "-nvme",
        "nvme#0", "nvme\\0", "nvme:0",
    };
    Test *t = test_start(data, 1);
    int i;

    server_start(t, 0, SERVER_NVME);
    for (i = 0; i < ARRAY_SIZE(ids); i++) {
        g_autofree char *desc = g_strdup_printf(
            "vfio-user-nvme: id '%s' is not well formed: it must begin with "
            "a letter and contain only letters, digits, '-', '.' and '_'",
            ids[i]);
        QDict *args = nvme_args(t, "rp1", 0, ids[i]);

        device_add_refused(t, args, desc);
        check_port(t, 1, "empty", NULL, NULL);
    }
    hot_add(t, 1, 0, "a-Well_formed.id9");
    test_end(t);
}

/*
 * A system_reset during an orderly removal completes it: the guest that
 * was asked is gone, the one that boots is never told.  The port takes
 * a new device afterwards.
 */
static void test_reset_during_removal(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    remove_start(t, 1, "nvme0");
    qtest_qmp_assert_success(t->qts, "{'execute': 'system_reset'}");
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "completed", "qmp",
                         "completed by a reset of the VM");
    expect_removed(t, 1, "nvme0");

    /* The firmware numbers the buses again */
    port_number_bus(t, 1);
    server_start(t, 1, SERVER_NVME);
    hot_add(t, 1, 1, "nvme1");
    test_end(t);
}

/*
 * A device_del of the device whose orderly removal is pending asks the
 * guest again (native: once upstream's 5 s guard has passed), without a
 * second operation.
 */
static void test_remove_request_again(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    /* ACPI's guard takes a request at VM clock 0 for one without end */
    qtest_clock_step(t->qts, MS_TO_NS(10));
    remove_start(t, 1, "nvme0");

    if (t->mode->native) {
        /* The guest took the button press, then lost it */
        g_autofree QPCIDevice *port = port_dev(t, 1);
        uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);

        qpci_config_writew(port, exp + PCI_EXP_SLTSTA, PCI_EXP_SLTSTA_ABP);
        g_assert_cmphex(qpci_config_readw(port, exp + PCI_EXP_SLTSTA) &
                        PCI_EXP_SLTSTA_ABP, ==, 0);
        qtest_clock_step(t->qts, MS_TO_NS(5001));
        qtest_qmp_device_del_send(t->qts, "nvme0");
        g_assert_cmphex(qpci_config_readw(port, exp + PCI_EXP_SLTSTA) &
                        PCI_EXP_SLTSTA_ABP, ==, PCI_EXP_SLTSTA_ABP);
    } else {
        qtest_clock_step(t->qts, MS_TO_NS(1));
        qtest_qmp_device_del_send(t->qts, "nvme0");
    }
    assert_no_hotplug_event(t);
    check_port(t, 1, "removing", "nvme0", "remove");

    remove_finish(t, 1, "nvme0");
    test_end(t);
}

/*
 * ACPI: a guest that ejects the slot of a device it has not enabled yet
 * fails the add, and the removal is its own.
 */
static void test_guest_ejects_while_adding(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");
    acpi_eject(t, 1);
    expect_hotplug_event(t, "rp1", "nvme0", "add", "failed", "guest",
                         "the guest ejected the device before enabling it");
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "started", "guest",
                         NULL);
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "completed", "guest",
                         NULL);
    expect_removed(t, 1, "nvme0");

    server_start(t, 1, SERVER_NVME);
    hot_add(t, 1, 1, "nvme1");
    test_end(t);
}

/*
 * With -only-migratable the migration blocker refuses a hot-add; the
 * guest must not have been told of a card by then.
 */
static void test_only_migratable(const void *data)
{
    Test *t = test_start_extra(data, 1, "-only-migratable");

    server_start(t, 0, SERVER_NVME);
    device_add_refused(t, nvme_args(t, "rp1", 0, "nvme0"),
                       "disallowing migration blocker (--only-migratable) "
                       "for: passthrough NVMe 'nvme0' on port 'rp1' prevents "
                       "migration and snapshots: remove it first");
    check_port(t, 1, "empty", NULL, NULL);
    g_assert_null(qpci_device_find(t->pcibus, QPCI_DEVFN(1 << 5, 0)));
    if (t->mode->native) {
        g_autofree QPCIDevice *port = port_dev(t, 1);
        uint8_t exp = qpci_find_capability(port, PCI_CAP_ID_EXP, 0);
        uint16_t sta = qpci_config_readw(port, exp + PCI_EXP_SLTSTA);

        g_assert_cmphex(sta & (PCI_EXP_SLTSTA_PDS | PCI_EXP_SLTSTA_PDC |
                               PCI_EXP_SLTSTA_ABP), ==, 0);
    } else {
        qtest_outl(t->qts, ACPI_PCIHP_ADDR_ICH9 + PCI_SEL_BASE,
                   port_bsel(t, 1));
        g_assert_cmphex(qtest_inl(t->qts, ACPI_PCIHP_ADDR_ICH9 +
                                  PCI_UP_BASE), ==, 0);
    }
    test_end(t);
}

/*
 * The unplug timeout and elapsed-ms both run on the VM's clock; changing
 * the timeout of a pending removal counts from the removal's start, and
 * 0 disarms it.
 */
static void test_remove_timeout_changed(const void *data)
{
    Test *t = test_start(data, 1);
    g_autoptr(QDict) resp = NULL;

    server_start(t, 0, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    port_set(t, 1, "unplug-timeout-ms", QOBJECT(qnum_from_int(200)));
    remove_start(t, 1, "nvme0");

    /* Disarmed: nothing happens, however long the guest takes */
    port_set(t, 1, "unplug-timeout-ms", QOBJECT(qnum_from_int(0)));
    qtest_clock_step(t->qts, MS_TO_NS(1000));
    assert_no_hotplug_event(t);
    resp = query(t);
    g_assert_cmpint(qdict_get_int(port_info(resp, 1), "elapsed-ms"), ==,
                    1000);

    /* Armed again: 1500 ms from the start of the removal */
    port_set(t, 1, "unplug-timeout-ms", QOBJECT(qnum_from_int(1500)));
    qtest_clock_step(t->qts, MS_TO_NS(499));
    assert_no_hotplug_event(t);
    check_port(t, 1, "removing", "nvme0", "remove");
    qtest_clock_step(t->qts, MS_TO_NS(1));
    expect_hotplug_event(t, "rp1", "nvme0", "remove", "failed", "timeout",
                         "the guest did not complete the removal within "
                         "1500 ms");
    expect_surprise_removal(t, 1, "nvme0", "timeout",
                            "the guest did not complete the removal within "
                            "1500 ms");
    test_end(t);
}

int main(int argc, char **argv)
{
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
        add_test(m, "surprise/host-stalls/removes-device", test_host_stalls);
        add_test(m, "surprise/slot-waits-for-guest-ack", test_surprise_ack);
        add_test(m, "busy/adding/refuses-other-operations",
                 test_busy_adding);
        add_test(m, "add/cancel/device-del-orderly",
                 test_add_cancel_orderly);
        add_test(m, "add/cancel/device-del-surprise",
                 test_add_cancel_surprise);
        add_test(m, "add/timeout/fails-the-add", test_add_timeout);
        add_test(m, "add/timeout/changed-counts-from-start",
                 test_add_timeout_changed);
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
        add_test(m, "refuse/cold-plug-at-function-1",
                 test_refuse_cold_function);
        add_test(m, "refuse/cold-plug-two-functions",
                 test_refuse_cold_two_functions);
        add_test(m, "refuse/hot-add-at-other-address",
                 test_refuse_hot_function);
        add_test(m, "refuse/id-device-del-cannot-name", test_refuse_bad_id);
        add_test(m, "reset/completes-pending-removal",
                 test_reset_during_removal);
        add_test(m, "remove/orderly/device-del-again-asks-again",
                 test_remove_request_again);
        add_test(m, "refuse/only-migratable-before-guest-is-told",
                 test_only_migratable);
        add_test(m, "remove/timeout/changed-while-pending",
                 test_remove_timeout_changed);
    }
    add_test(&modes[0], "policy/at-most-32-devices", test_33rd_device);
    /*
     * ACPI only: with native hotplug the guest powers the slot on first,
     * which resets the device, and a reset waits for the server.
     */
    add_test(&modes[0], "surprise/host-stalls/irq-setup-does-not-wait",
             test_host_stalls_irq_setup);
    add_test(&modes[0], "add/guest-ejects-while-adding-fails-the-add",
             test_guest_ejects_while_adding);


    return g_test_run();
}
