/*
 * QTest testcase: faults at every stage of NVMe passthrough hotplug
 *
 * In both signalling modes, a passthrough NVMe on port rp1 is hit by a
 * fault at each stage of its life: while it is being added, present and
 * idle, under the guest's I/O, and while it is being removed.  The
 * faults: the host device goes away (the vfio-user server is killed),
 * system_reset, stop/cont, and the host device going away while the VM
 * is paused.  After each, QEMU runs, the port is not
 * stuck (it ends empty or present, never adding or removing), the port
 * takes a new device, and data the guest flushed before an orderly
 * removal is on the backing image.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "nvme-passthru/harness.h"
#include "nvme-passthru/nvme-driver.h"

typedef enum Stage {
    STAGE_ADDING,       /* device_add done, the guest has not enabled it */
    STAGE_PRESENT,      /* the guest's driver uses it, nothing in flight */
    STAGE_IO,           /* writes submitted, not reaped */
    STAGE_REMOVING,     /* device_del done, the guest has not ejected it */
    STAGE__MAX,
} Stage;

typedef enum Fault {
    FAULT_HOST_GONE,    /* the vfio-user server is killed */
    FAULT_RESET,        /* system_reset */
    FAULT_STOP_CONT,    /* stop, then cont */
    FAULT_PAUSED_GONE,  /* the server is killed while the VM is paused */
    FAULT__MAX,
} Fault;

static const char *const stage_names[STAGE__MAX] = {
    [STAGE_ADDING] = "while-adding",
    [STAGE_PRESENT] = "while-present",
    [STAGE_IO] = "under-io",
    [STAGE_REMOVING] = "while-removing",
};

static const char *const fault_names[FAULT__MAX] = {
    [FAULT_HOST_GONE] = "host-gone",
    [FAULT_RESET] = "system-reset",
    [FAULT_STOP_CONT] = "stop-cont",
    [FAULT_PAUSED_GONE] = "host-gone-while-paused",
};

typedef struct Case {
    const Mode *mode;
    Stage stage;
    Fault fault;
} Case;

#define HOST_GONE "vfio-user server closed the connection"
#define IO_LBA 64
#define IO_COUNT 4
#define DATA_LBA 256

static void vm_running(Test *t, bool running)
{
    g_autoptr(QDict) resp = qtest_qmp(t->qts,
                                      "{'execute': 'query-status'}");

    g_assert_true(qtest_probe_child(t->qts));
    g_assert_cmpint(qdict_get_bool(qdict_get_qdict(resp, "return"),
                                   "running"), ==, running);
}

/*
 * The device on rp1 (served by @srv) is present: the guest writes, flushes
 * and removes it in order; what it flushed is on the backing image.
 */
static void orderly_removal_keeps_data(Test *t, NvmeDrv *d, int srv,
                                       const char *id)
{
    nvme_drv_write(d, DATA_LBA, 8, 0x5a);
    nvme_drv_flush(d);
    nvme_drv_check(d, DATA_LBA, 0x5a);
    nvme_drv_stop(d);
    remove_orderly(t, 1, id);
    check_image(t, srv, DATA_LBA, 8, 0x5a);
}

/* Bring the stage about; @d is the guest's driver once it has one */
static void stage_enter(Test *t, Stage stage, NvmeDrv *d)
{
    server_start(t, 0, SERVER_NVME);
    add_start(t, 1, 0, "nvme0");
    if (stage == STAGE_ADDING) {
        return;
    }
    add_finish(t, 1, "nvme0");
    nvme_drv_start(d, t, 1);
    switch (stage) {
    case STAGE_IO:
        nvme_drv_submit_writes(d, IO_LBA, IO_COUNT, 0xa5);
        break;
    case STAGE_REMOVING:
        remove_start(t, 1, "nvme0");
        break;
    default:
        break;
    }
}

/* The host takes the device away: a surprise removal, whatever the stage */
static void fault_host_gone(Test *t, Stage stage, NvmeDrv *d)
{
    server_kill(&t->srv[0]);
    if (stage == STAGE_ADDING) {
        expect_hotplug_event(t, "rp1", "nvme0", "add", "failed",
                             "host-gone", "surprise removal before the "
                             "guest enabled the device: " HOST_GONE);
    } else if (stage == STAGE_REMOVING) {
        expect_hotplug_event(t, "rp1", "nvme0", "remove", "failed",
                             "host-gone", HOST_GONE);
    }
    expect_surprise_removal(t, 1, "nvme0", "host-gone", HOST_GONE);
    if (stage != STAGE_ADDING) {
        nvme_drv_stop(d);
    }
    guest_ack_gone(t, 1);
}

/*
 * A reset completes a pending removal; otherwise the device stays, the
 * rebooted guest numbers the buses again and takes it into use again.
 * Returns whether the device is still there.
 */
static bool fault_reset(Test *t, Stage stage, NvmeDrv *d)
{
    qtest_qmp_assert_success(t->qts, "{'execute': 'system_reset'}");
    port_number_bus(t, 1);
    if (stage != STAGE_ADDING) {
        nvme_drv_stop(d);
    }
    switch (stage) {
    case STAGE_REMOVING:
        expect_hotplug_event(t, "rp1", "nvme0", "remove", "completed",
                             "qmp", "completed by a reset of the VM");
        expect_removed(t, 1, "nvme0");
        return false;
    case STAGE_ADDING:
        check_port(t, 1, "adding", "nvme0", "add");
        add_finish(t, 1, "nvme0");
        break;
    default:
        /* The reset device waits for the guest's driver again */
        assert_no_hotplug_event(t);
        check_port(t, 1, "present", "nvme0", NULL);
        guest_enable(t, 1);
        break;
    }
    nvme_drv_start(d, t, 1);
    return true;
}

/* A paused VM changes nothing: each operation goes on after cont */
static bool fault_stop_cont(Test *t, Stage stage, NvmeDrv *d)
{
    qtest_qmp_assert_success(t->qts, "{'execute': 'stop'}");
    vm_running(t, false);
    assert_no_hotplug_event(t);
    qtest_qmp_assert_success(t->qts, "{'execute': 'cont'}");
    vm_running(t, true);

    switch (stage) {
    case STAGE_ADDING:
        add_finish(t, 1, "nvme0");
        nvme_drv_start(d, t, 1);
        break;
    case STAGE_IO:
        nvme_drv_reap(d);
        nvme_drv_check(d, IO_LBA + IO_COUNT - 1, 0xa5);
        break;
    case STAGE_REMOVING:
        check_port(t, 1, "removing", "nvme0", "remove");
        nvme_drv_stop(d);
        remove_finish(t, 1, "nvme0");
        return false;
    default:
        break;
    }
    return true;
}

static void test_fault(const void *data)
{
    const Case *c = data;
    Test *t = test_start(c->mode, 1);
    NvmeDrv d;
    bool present = false;

    stage_enter(t, c->stage, &d);
    switch (c->fault) {
    case FAULT_HOST_GONE:
        fault_host_gone(t, c->stage, &d);
        break;
    case FAULT_RESET:
        present = fault_reset(t, c->stage, &d);
        break;
    case FAULT_STOP_CONT:
        present = fault_stop_cont(t, c->stage, &d);
        break;
    case FAULT_PAUSED_GONE:
        /* The removal does not wait for the guest to run again */
        qtest_qmp_assert_success(t->qts, "{'execute': 'stop'}");
        fault_host_gone(t, c->stage, &d);
        vm_running(t, false);
        qtest_qmp_assert_success(t->qts, "{'execute': 'cont'}");
        break;
    default:
        g_assert_not_reached();
    }
    vm_running(t, true);

    /* Nothing stuck: the port holds a working device, or takes a new one */
    if (present) {
        check_port(t, 1, "present", "nvme0", NULL);
        orderly_removal_keeps_data(t, &d, 0, "nvme0");
    } else {
        check_port(t, 1, "empty", NULL, NULL);
    }
    server_start(t, 1, SERVER_NVME);
    hot_add(t, 1, 1, "nvme1");
    nvme_drv_start(&d, t, 1);
    orderly_removal_keeps_data(t, &d, 1, "nvme1");
    test_end(t);
}

/*
 * A reset soon after a removal, while the device still waits for RCU to
 * finalize it.  The x86 vapic's reset waits for each vCPU with
 * run_on_cpu(), which lets go of the BQL: the RCU thread then finalizes
 * the device, whose VFIO address space unregisters its reset handler
 * from the reset container the reset is iterating over.  QEMU must live
 * through it (it tripped an assertion in hw/core/resetcontainer.c), and
 * the port must take the next device.
 */
#define RESET_RACE_ROUNDS   12
#define RESET_RACE_RESETS   25

static void test_reset_after_removal(const void *data)
{
    /* Each vCPU is a run_on_cpu() in each reset */
    Test *t = test_start_extra(data, 1, "-smp 4");
    int round, k;

    for (round = 0; round < RESET_RACE_ROUNDS; round++) {
        server_start(t, round, SERVER_NVME);
        hot_add(t, 1, round, "nvme0");
        remove_orderly(t, 1, "nvme0");
        for (k = 0; k < RESET_RACE_RESETS; k++) {
            qtest_qmp_assert_success(t->qts, "{'execute': 'system_reset'}");
        }
        port_number_bus(t, 1);
        vm_running(t, true);
    }
    test_end(t);
}

int main(int argc, char **argv)
{
    static Case cases[ARRAY_SIZE(modes) * STAGE__MAX * FAULT__MAX];
    int m, s, f, i = 0;

    g_test_init(&argc, &argv, NULL);
    for (m = 0; m < ARRAY_SIZE(modes); m++) {
        for (f = 0; f < FAULT__MAX; f++) {
            for (s = 0; s < STAGE__MAX; s++) {
                g_autofree char *path = g_strdup_printf(
                    "/passthru-fault/%s/%s/%s", modes[m].name,
                    fault_names[f], stage_names[s]);

                cases[i] = (Case){ &modes[m], s, f };
                qtest_add_data_func(path, &cases[i], test_fault);
                i++;
            }
        }
    }
    for (m = 0; m < ARRAY_SIZE(modes); m++) {
        g_autofree char *path = g_strdup_printf(
            "/passthru-fault/%s/reset-after-removal", modes[m].name);

        qtest_add_data_func(path, &modes[m], test_reset_after_removal);
    }
    return g_test_run();
}
