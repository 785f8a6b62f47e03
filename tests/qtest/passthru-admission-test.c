/*
 * QTest testcase for query-passthru-hotplug-admission: every reason a
 * device_add of a passthrough NVMe would be refused, asked beforehand
 *
 * Each refusal code is provoked alone, and where device_add checks the
 * same rule first, device_add of the same arguments is refused with the
 * same message: the query and device_add run the same code.  One answer
 * lists several reasons at once, and asking changes nothing: no device,
 * no event, the same query-passthru-hotplug and QOM tree, and a
 * vfio-user server that the query never connects to.
 *
 * Host devices of kernel VFIO are synthetic sysfs trees (sysfsdev=): a
 * device's class, its driver link and its IOMMU group.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "nvme-passthru/harness.h"

#define ANY NULL

typedef struct HostDev {
    const char *class;
    const char *driver;     /* NULL: bound to no driver */
    bool group_shared;      /* another device in its IOMMU group */
} HostDev;

static const HostDev good_host = { "0x010802", "vfio-pci", false };

/*
 * A synthetic sysfs device under @dir: class, driver link, IOMMU group.
 * Returns its path, for sysfsdev=.
 */
static char *host_dev(Test *t, const HostDev *h)
{
    g_autofree char *dev = g_build_filename(t->dir, "0000:01:00.0", NULL);
    g_autofree char *grp = g_build_filename(t->dir, "group7", NULL);
    g_autofree char *grp_devs = g_build_filename(grp, "devices", NULL);
    g_autofree char *drv = NULL;
    g_autofree char *f = NULL;

    g_assert_cmpint(g_mkdir_with_parents(dev, 0700), ==, 0);
    g_assert_cmpint(g_mkdir_with_parents(grp_devs, 0700), ==, 0);
    f = g_build_filename(dev, "class", NULL);
    g_assert_true(g_file_set_contents(f, h->class, -1, NULL));
    g_free(f);
    f = g_build_filename(dev, "iommu_group", NULL);
    g_assert_cmpint(symlink(grp, f), ==, 0);
    g_free(f);
    f = g_build_filename(grp_devs, "0000:01:00.0", NULL);
    g_assert_true(g_file_set_contents(f, "", 0, NULL));
    if (h->group_shared) {
        g_free(f);
        f = g_build_filename(grp_devs, "0000:01:00.1", NULL);
        g_assert_true(g_file_set_contents(f, "", 0, NULL));
    }
    if (h->driver) {
        drv = g_build_filename(t->dir, "drivers", h->driver, NULL);
        g_assert_cmpint(g_mkdir_with_parents(drv, 0700), ==, 0);
        g_free(f);
        f = g_build_filename(dev, "driver", NULL);
        g_assert_cmpint(symlink(drv, f), ==, 0);
    }
    return g_steal_pointer(&dev);
}

static void rm_rf(const char *path)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", path);

    g_assert_cmpint(system(cmd), ==, 0);
}

/* Remove the synthetic trees, then what the harness made */
static void end(Test *t)
{
    g_autofree char *dev = g_build_filename(t->dir, "0000:01:00.0", NULL);
    g_autofree char *grp = g_build_filename(t->dir, "group7", NULL);
    g_autofree char *drv = g_build_filename(t->dir, "drivers", NULL);

    rm_rf(dev);
    rm_rf(grp);
    rm_rf(drv);
    test_end(t);
}

/* The answer to the admission query of @args (reference taken) */
static QDict *admission(Test *t, QDict *args)
{
    QDict *resp = qtest_qmp(t->qts, "{'execute': "
                            "'query-passthru-hotplug-admission', "
                            "'arguments': {'device': %p}}", args);
    QDict *ret;

    g_assert_true(qdict_haskey(resp, "return"));
    ret = qdict_get_qdict(resp, "return");
    qobject_ref(ret);
    qobject_unref(resp);
    return ret;
}

/*
 * @ans lists exactly the refusal @codes (NULL-terminated), in order;
 * returns the first refusal's message.
 */
static const char *expect_codes(QDict *ans, const char *const *codes)
{
    QList *list = qdict_get_qlist(ans, "refusals");
    const QListEntry *e = qlist_first(list);
    const char *first = NULL;

    g_assert_cmpint(qdict_get_bool(ans, "admissible"), ==, !codes[0]);
    for (; *codes; codes++, e = qlist_next(e)) {
        QDict *r;

        g_assert_nonnull(e);
        r = qobject_to(QDict, qlist_entry_obj(e));
        g_test_message("%s: %s", qdict_get_str(r, "code"),
                       qdict_get_str(r, "message"));
        g_assert_cmpstr(qdict_get_str(r, "code"), ==, *codes);
        g_assert_cmpstr(qdict_get_str(r, "message"), !=, "");
        first = first ?: qdict_get_str(r, "message");
    }
    g_assert_null(e);
    return first;
}

/* The query answers @code alone, with @msg (ANY: any message) */
static void expect_one(Test *t, QDict *args, const char *code,
                       const char *msg)
{
    const char *codes[] = { code, NULL };
    g_autoptr(QDict) ans = admission(t, args);
    const char *got = expect_codes(ans, codes);

    if (msg) {
        g_assert_cmpstr(got, ==, msg);
    }
}

/*
 * The query answers @code alone, and device_add of the same arguments
 * is refused with the same message, @msg
 */
static void expect_same(Test *t, QDict *args, const char *code,
                        const char *msg)
{
    qobject_ref(args);
    expect_one(t, args, code, msg);
    device_add_refused(t, args, msg);
}

static QDict *vfio_args(const char *driver, const char *id,
                        const char *bus, const char *sysfsdev)
{
    QDict *args = qdict_new();

    qdict_put_str(args, "driver", driver);
    qdict_put_str(args, "id", id);
    if (bus) {
        qdict_put_str(args, "bus", bus);
    }
    if (sysfsdev) {
        qdict_put_str(args, "sysfsdev", sysfsdev);
    }
    return args;
}

/* A VM with two ports, and a vfio-user server (0) */
static Test *start(void)
{
    Test *t = test_start(&modes[0], 2);

    server_start(t, 0, SERVER_NVME);
    return t;
}

static void test_admissible(const void *data)
{
    Test *t = start();
    g_autofree char *host = host_dev(t, &good_host);
    const char *none[] = { NULL };
    g_autoptr(QDict) a = admission(t, nvme_args(t, "rp1", 0, "nvme0"));
    g_autoptr(QDict) b = admission(t, vfio_args("vfio-pci", "h0", "rp2",
                                                host));

    expect_codes(a, none);
    expect_codes(b, none);
    g_assert_cmpint(qlist_size(qdict_get_qlist(a, "refusals")), ==, 0);
    end(t);
}

static void test_port(const void *data)
{
    Test *t = start();
    QDict *no_bus = nvme_args(t, "rp1", 0, "nvme0");

    qdict_del(no_bus, "bus");
    expect_one(t, nvme_args(t, "nope", 0, "nvme0"), "port-missing",
               "Bus 'nope' not found");
    expect_one(t, no_bus, "port-missing",
               "no bus given: name a pcie-hotplug-passthru port with bus=");
    expect_one(t, nvme_args(t, "pcie.0", 0, "nvme0"), "not-passthru-port",
               "bus 'pcie.0' is not a pcie-hotplug-passthru port's");
    end(t);
}

static void test_wrong_driver(const void *data)
{
    Test *t = start();

    expect_same(t, vfio_args("e1000e", "nic0", "rp1", NULL), "wrong-driver",
                "pcie-hotplug-passthru port 'rp1' accepts only vfio-pci, "
                "vfio-nvme and vfio-user-nvme devices, not 'e1000e'");
    expect_one(t, vfio_args("vfio-pci-nohotplug", "v0", "rp1", NULL),
               "wrong-driver", ANY);
    expect_one(t, vfio_args("no-such-device", "v0", "rp1", NULL),
               "wrong-driver", ANY);
    end(t);
}

static void test_bad_property(const void *data)
{
    Test *t = start();
    QDict *args = nvme_args(t, "rp1", 0, "nvme0");

    qdict_put_int(args, "x-no-such-property", 1);
    expect_same(t, args, "bad-property",
                "Property 'vfio-user-nvme.x-no-such-property' not found");
    end(t);
}

static void test_id(const void *data)
{
    Test *t = start();

    expect_same(t, nvme_args(t, "rp1", 0, "nvme 0"), "bad-id",
                "vfio-user-nvme: id 'nvme 0' is not well formed: it must "
                "begin with a letter and contain only letters, digits, "
                "'-', '.' and '_'");
    expect_same(t, nvme_args(t, "rp1", 0, "rp2"), "id-in-use",
                "Duplicate device ID 'rp2'");
    end(t);
}

static void test_wrong_address(const void *data)
{
    Test *t = start();
    QDict *args = nvme_args(t, "rp1", 0, "nvme0");

    qdict_put_str(args, "addr", "0.1");
    expect_same(t, args, "wrong-address",
                "vfio-user-nvme 'nvme0' must be at address 0.0 of port "
                "'rp1', not 0.1: a port holds one device");
    end(t);
}

static void test_identity_override(const void *data)
{
    Test *t = start();
    QDict *args = nvme_args(t, "rp1", 0, "nvme0");

    qdict_put_int(args, "x-pci-class-code", 0x010802);
    expect_same(t, args, "identity-override",
                "vfio-user-nvme 'nvme0': property 'x-pci-class-code' is "
                "not allowed: a passthrough NVMe device keeps its own "
                "identity");
    end(t);
}

static void test_x_req_off(const void *data)
{
    Test *t = start();
    g_autofree char *host = host_dev(t, &good_host);
    QDict *args = vfio_args("vfio-pci", "h0", "rp1", host);

    qdict_put_bool(args, "x-req", false);
    expect_same(t, args, "x-req-off",
                "vfio-pci 'h0': property 'x-req' is not allowed off: the "
                "host taking the device back must remove it from the "
                "guest");
    end(t);
}

static void test_host_missing(const void *data)
{
    Test *t = start();
    QDict *args = vfio_args("vfio-nvme", "v0", "rp1", NULL);
    g_autofree char *sock = g_build_filename(t->dir, "none.sock", NULL);
    QDict *sock_args = nvme_args(t, "rp1", 0, "nvme0");
    g_autofree char *sock_msg = g_strdup_printf(
        "vfio-user-nvme 'nvme0': no vfio-user server socket at %s", sock);

    qdict_put_str(args, "host", "0000:99:00.0");
    expect_one(t, args, "host-device-missing",
               "vfio-nvme 'v0': no such host device: "
               "/sys/bus/pci/devices/0000:99:00.0");
    expect_one(t, vfio_args("vfio-nvme", "v0", "rp1", NULL),
               "host-device-missing",
               "vfio-nvme 'v0': no host device: give host= or sysfsdev=");
    qdict_put_str(qdict_get_qdict(sock_args, "socket"), "path", sock);
    expect_one(t, sock_args, "host-device-missing", sock_msg);
    expect_one(t, vfio_args("vfio-user-nvme", "nvme0", "rp1", NULL),
               "host-device-missing",
               "vfio-user-nvme 'nvme0': no vfio-user server: give socket=");
    end(t);
}

static void test_not_nvme(const void *data)
{
    Test *t = start();
    HostDev nic = { "0x020000", "vfio-pci", false };
    g_autofree char *host = host_dev(t, &nic);
    g_autofree char *msg = g_strdup_printf(
        "vfio-pci 'h0': class code 02:00:00 is not an NVMe controller "
        "(01:08:02)");

    expect_one(t, vfio_args("vfio-pci", "h0", "rp1", host), "not-nvme",
               msg);
    end(t);
}

/* Bound to the host's nvme driver, or to no driver: not vfio-pci */
static void test_host_in_use(const void *data)
{
    static const HostDev used[] = {
        { "0x010802", "nvme", false }, { "0x010802", NULL, false },
    };
    static const char *const state[] = {
        "in use by the host (driver nvme)", "bound to no driver",
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(used); i++) {
        Test *t = start();
        g_autofree char *host = host_dev(t, &used[i]);
        g_autofree char *msg = g_strdup_printf(
            "vfio-pci 'h0': host device %s is %s, not vfio-pci: bind it to "
            "vfio-pci first", host, state[i]);

        expect_one(t, vfio_args("vfio-pci", "h0", "rp1", host),
                   "host-device-in-use", msg);
        end(t);
    }
}

static void test_group_not_viable(const void *data)
{
    Test *t = start();
    HostDev shared = { "0x010802", "vfio-pci", true };
    g_autofree char *host = host_dev(t, &shared);

    expect_same(t, vfio_args("vfio-pci", "h0", "rp1", host),
                "iommu-group-not-viable",
                "vfio-pci 'h0': IOMMU group group7 of 0000:01:00.0 also "
                "holds 0000:01:00.1: pass through a device that is alone "
                "in its group");
    end(t);
}

static void test_operation_pending(const void *data)
{
    Test *t = start();

    server_start(t, 1, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");
    expect_same(t, nvme_args(t, "rp2", 1, "nvme1"), "operation-pending",
                ERR_BUSY_ADD);
    end(t);
}

static void test_port_occupied(const void *data)
{
    Test *t = start();

    server_start(t, 1, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    expect_same(t, nvme_args(t, "rp1", 1, "nvme1"), "port-occupied",
                "port 'rp1' already holds 'nvme0'");
    end(t);
}

/* After a surprise removal, until the guest has acknowledged it */
static void test_removal_unacknowledged(const void *data)
{
    Test *t = test_start(data, 1);

    server_start(t, 0, SERVER_NVME);
    server_start(t, 1, SERVER_NVME);
    hot_add(t, 1, 0, "nvme0");
    port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    qtest_qmp_device_del_send(t->qts, "nvme0");
    expect_surprise_removal(t, 1, "nvme0", "qmp",
                            "device_del on a port with removal=surprise");
    expect_same(t, nvme_args(t, "rp1", 1, "nvme1"),
                "removal-unacknowledged",
                "port 'rp1': the guest has not yet acknowledged the "
                "removal of the previous device");
    end(t);
}

static void test_migration(const void *data)
{
    Test *t = test_start_extra(&modes[0], 1, "-only-migratable");

    server_start(t, 0, SERVER_NVME);
    expect_one(t, nvme_args(t, "rp1", 0, "nvme0"), "migration",
               "a passthrough NVMe device blocks migration, and "
               "-only-migratable refuses devices that do");
    end(t);
}

/*
 * A VM without a port: told that it has none, and which VM-wide rule
 * it breaks.  @args: the VM's options besides -nodefaults.
 */
typedef struct PolicyCase {
    const char *path;
    const char *args;
    const char *codes[6];       /* NULL-terminated */
} PolicyCase;

#define PFLASH "-drive if=pflash,format=raw,readonly=on," \
               "file=/usr/share/OVMF/OVMF_CODE_4M.fd"
#define POLICY_OK PFLASH " -overcommit mem-lock=on"

static const PolicyCase policy_cases[] = {
    { "policy/none-broken", "-machine q35 " POLICY_OK,
      { "port-missing" } },
    { "policy/machine-type", "-machine pc " POLICY_OK,
      { "port-missing", "policy-machine-type" } },
    { "policy/firmware", "-machine q35 -overcommit mem-lock=on",
      { "port-missing", "policy-firmware" } },
    { "policy/memlock", "-machine q35 " PFLASH,
      { "port-missing", "policy-memlock" } },
    { "policy/cpu-hotplug", "-machine q35 -smp 1,maxcpus=2 " POLICY_OK,
      { "port-missing", "policy-cpu-hotplug" } },
    { "policy/vcpus", "-machine q35 -smp 129 " POLICY_OK,
      { "port-missing", "policy-vcpus" } },
    { "policy/memory-hotplug",
      "-machine q35 -m 128M,slots=1,maxmem=1G " POLICY_OK,
      { "port-missing", "policy-memory-hotplug" } },
    { "policy/viommu", "-machine q35 -device intel-iommu " POLICY_OK,
      { "port-missing", "policy-viommu" } },
    { "policy/several", "-machine q35 -smp 1,maxcpus=2 -device intel-iommu",
      { "port-missing", "policy-firmware", "policy-memlock",
        "policy-cpu-hotplug", "policy-viommu" } },
};

static void test_policy(const void *data)
{
    const PolicyCase *pc = data;
    g_autofree char *args = g_strdup_printf("-nodefaults %s", pc->args);
    QTestState *qts = qtest_init(args);
    g_autoptr(QDict) resp = NULL;
    const char *const *code = pc->codes;
    const QListEntry *e;
    QDict *ans;

    /* The socket "/" is no server: host-device-missing, not the point */
    resp = qtest_qmp(qts, "{'execute': 'query-passthru-hotplug-admission',"
                     " 'arguments': {'device': {'driver': 'vfio-user-nvme',"
                     " 'id': 'nvme0', 'bus': 'rp1', 'socket': {'type': "
                     "'unix', 'path': '/'}}}}");
    ans = qdict_get_qdict(resp, "return");
    g_assert_nonnull(ans);
    g_assert_false(qdict_get_bool(ans, "admissible"));
    for (e = qlist_first(qdict_get_qlist(ans, "refusals")); e;
         e = qlist_next(e)) {
        QDict *r = qobject_to(QDict, qlist_entry_obj(e));

        g_test_message("%s: %s", qdict_get_str(r, "code"),
                       qdict_get_str(r, "message"));
        if (strcmp(qdict_get_str(r, "code"), "host-device-missing")) {
            g_assert_cmpstr(qdict_get_str(r, "code"), ==, *code);
            code++;
        }
    }
    g_assert_null(*code);
    qtest_quit(qts);
}

/*
 * 32 devices on 32 ports: the 33rd device, with a wrong id and address
 * and a faked identity, for a full port.  Every reason at once, and
 * device_add says the first.
 */
static void test_several(const void *data)
{
    Test *t = test_start_full(&modes[0]);
    const char *codes[] = {
        "wrong-address", "bad-id", "identity-override", "too-many-devices",
        "port-occupied", NULL,
    };
    g_autoptr(QDict) ans = NULL;
    g_autoptr(GString) json = NULL;
    QDict *dev;
    const char *first;

    dev = nvme_args(t, "p0", 32, "n 32");
    qdict_put_str(dev, "addr", "0.1");
    qdict_put_int(dev, "x-pci-vendor-id", 0x8086);
    qobject_ref(dev);
    ans = admission(t, dev);
    json = qobject_to_json_pretty(QOBJECT(ans), true);
    g_test_message("answer: %s", json->str);
    first = expect_codes(ans, codes);
    device_add_refused(t, dev, first);
    test_end(t);
}

/*
 * Asking changes nothing: the same query-passthru-hotplug and QOM tree,
 * no event, and the vfio-user server never saw a client (it would have
 * exited when the client hung up): a device_add then works.
 */
static void test_no_side_effects(const void *data)
{
    Test *t = start();
    g_autofree char *host = host_dev(t, &good_host);
    g_autoptr(QDict) before = NULL;
    g_autoptr(QDict) after = NULL;
    g_autoptr(GString) b = NULL;
    g_autoptr(GString) a = NULL;
    const char *const trees[] = {
        "/machine/peripheral", "/machine/peripheral-anon",
        "/machine/unattached",
    };
    char *qom_before[ARRAY_SIZE(trees)];
    size_t i;

    server_start(t, 1, SERVER_NVME);
    hot_add(t, 2, 1, "nvme1");
    for (i = 0; i < ARRAY_SIZE(trees); i++) {
        g_autoptr(QDict) r = qtest_qmp(t->qts, "{'execute': 'qom-list', "
                                       "'arguments': {'path': %s}}",
                                       trees[i]);
        qom_before[i] = g_string_free(qobject_to_json(QOBJECT(r)), false);
    }
    before = query(t);

    qobject_unref(admission(t, nvme_args(t, "rp1", 0, "nvme0")));
    qobject_unref(admission(t, nvme_args(t, "rp2", 0, "nvme 0")));
    qobject_unref(admission(t, vfio_args("vfio-pci", "h0", "rp1", host)));
    qobject_unref(admission(t, vfio_args("vfio-nvme", "nvme1", "rp1",
                                         NULL)));

    after = query(t);
    b = qobject_to_json(QOBJECT(before));
    a = qobject_to_json(QOBJECT(after));
    g_assert_cmpstr(a->str, ==, b->str);
    for (i = 0; i < ARRAY_SIZE(trees); i++) {
        g_autoptr(QDict) r = qtest_qmp(t->qts, "{'execute': 'qom-list', "
                                       "'arguments': {'path': %s}}",
                                       trees[i]);
        g_autoptr(GString) now = qobject_to_json(QOBJECT(r));

        g_assert_cmpstr(now->str, ==, qom_before[i]);
        g_free(qom_before[i]);
    }
    events_sync(t);
    g_assert_cmpint(g_queue_get_length(&t->events), ==, 0);
    g_assert_false(server_exited(&t->srv[0]));

    hot_add(t, 1, 0, "nvme0");
    end(t);
}

/* A request that is no device_add is an error, not a refusal */
static void test_malformed(const void *data)
{
    Test *t = start();
    g_autoptr(QDict) e1 = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'query-passthru-hotplug-admission', "
        "'arguments': {'device': 'vfio-nvme'}}");
    g_autoptr(QDict) e2 = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'query-passthru-hotplug-admission', "
        "'arguments': {'device': {'bus': 'rp1'}}}");
    g_autoptr(QDict) e3 = qtest_qmp_assert_failure_ref(
        t->qts, "{'execute': 'query-passthru-hotplug-admission', "
        "'arguments': {'device': {'driver': 'vfio-nvme', 'id': 1}}}");

    assert_generic_error(e1, "'device' must be an object: the arguments "
                         "of device_add");
    assert_generic_error(e2, "Parameter 'device.driver' is missing");
    assert_generic_error(e3, "Invalid parameter type for 'device.id', "
                         "expected: string");
    end(t);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);

    qtest_add_data_func("/passthru-admission/admissible", NULL,
                        test_admissible);
    qtest_add_data_func("/passthru-admission/malformed-is-an-error", NULL,
                        test_malformed);
    qtest_add_data_func("/passthru-admission/port-missing-or-not-passthru",
                        NULL, test_port);
    qtest_add_data_func("/passthru-admission/wrong-driver", NULL,
                        test_wrong_driver);
    qtest_add_data_func("/passthru-admission/bad-property", NULL,
                        test_bad_property);
    qtest_add_data_func("/passthru-admission/bad-id-and-id-in-use", NULL,
                        test_id);
    qtest_add_data_func("/passthru-admission/wrong-address", NULL,
                        test_wrong_address);
    qtest_add_data_func("/passthru-admission/identity-override", NULL,
                        test_identity_override);
    qtest_add_data_func("/passthru-admission/x-req-off", NULL,
                        test_x_req_off);
    qtest_add_data_func("/passthru-admission/host-device-missing", NULL,
                        test_host_missing);
    qtest_add_data_func("/passthru-admission/not-nvme", NULL,
                        test_not_nvme);
    qtest_add_data_func("/passthru-admission/host-device-in-use-or-unbound",
                        NULL, test_host_in_use);
    qtest_add_data_func("/passthru-admission/iommu-group-not-viable", NULL,
                        test_group_not_viable);
    qtest_add_data_func("/passthru-admission/operation-pending", NULL,
                        test_operation_pending);
    qtest_add_data_func("/passthru-admission/port-occupied", NULL,
                        test_port_occupied);
    for (i = 0; i < N_MODES; i++) {
        g_autofree char *path = g_strdup_printf(
            "/passthru-admission/%s/removal-unacknowledged", modes[i].name);

        qtest_add_data_func(path, &modes[i], test_removal_unacknowledged);
    }
    qtest_add_data_func("/passthru-admission/migration", NULL,
                        test_migration);
    for (i = 0; i < ARRAY_SIZE(policy_cases); i++) {
        g_autofree char *path = g_strdup_printf("/passthru-admission/%s",
                                                policy_cases[i].path);

        qtest_add_data_func(path, &policy_cases[i], test_policy);
    }
    qtest_add_data_func("/passthru-admission/several-reasons-at-once", NULL,
                        test_several);
    qtest_add_data_func("/passthru-admission/no-side-effects", NULL,
                        test_no_side_effects);
    return g_test_run();
}
