/*
 * QTest testcase for an NVMe controller passed through with vfio-user
 *
 * A second QEMU process (-machine x-remote + x-vfio-user-server) exports an
 * emulated NVMe controller over a UNIX socket; the QEMU under test attaches
 * it with vfio-user-pci.  The test plays the guest driver: it programs the
 * controller through the client, completes admin and I/O commands whose
 * data the server moves by DMA into guest memory, and checks that each
 * completion's MSI-X message reaches the guest, also for a vector other
 * than 0 and for a vector the guest unmasks after the completion.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/wait.h>
#include "qemu/units.h"
#include "libqtest.h"
#include "libqos/libqos-pc.h"
#include "libqos/pci.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_regs.h"
#include "block/nvme.h"

/* ACPI PCI hotplug registers of q35 (hw/acpi/pcihp.c) */
#define ACPI_PCIHP_ADDR_ICH9    0x0cc0
#define PCI_DOWN_BASE           0x0004
#define PCI_EJ_BASE             0x0008
#define PCI_SEL_BASE            0x0010

#define SERIAL          "vfiouser0042"
#define QUEUE_SIZE      8
#define TIMEOUT_US      (10 * G_USEC_PER_SEC)
#define MSI_DATA(v)     (0x4e560000u | (v))

/* Doorbells, for a doorbell stride of 0 (CAP.DSTRD) */
#define SQ_TAIL_DB(q)   (0x1000 + 8 * (q))
#define CQ_HEAD_DB(q)   (0x1000 + 8 * (q) + 4)

typedef struct NvmeQueue {
    uint16_t id;
    uint64_t sq;
    uint64_t cq;
    uint16_t sq_tail;
    uint16_t cq_head;
    uint16_t phase;
} NvmeQueue;

typedef struct TestNvme {
    char *dir;
    char *sock;
    GPid server;
    QOSState *qs;
    QPCIDevice *dev;
    QPCIBar bar0;
    NvmeQueue admin;
    NvmeQueue io;
    uint64_t msi_addr;
    uint16_t cid;
} TestNvme;

static bool server_exited(TestNvme *t)
{
    int status;

    return waitpid(t->server, &status, WNOHANG) == t->server;
}

/* Start the "host NVMe": a vfio-user server process exporting an nvme */
static void server_start(TestNvme *t)
{
    g_autofree char *img = g_build_filename(t->dir, "nvme.img", NULL);
    g_autofree char *drive = g_strdup_printf(
        "if=none,id=d0,file=%s,format=raw", img);
    g_autofree char *object = g_strdup_printf(
        "{\"qom-type\":\"x-vfio-user-server\",\"id\":\"vfu0\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"},"
        "\"device\":\"nvme0\"}", t->sock);
    const char *argv[] = {
        qtest_qemu_binary(NULL),
        "-machine", "x-remote,vfio-user=on",
        "-nodefaults", "-display", "none",
        "-drive", drive,
        "-device", "nvme,id=nvme0,serial=" SERIAL ",drive=d0",
        "-object", object,
        NULL
    };
    g_autoptr(GError) err = NULL;
    gint64 deadline;
    int fd;

    fd = open(img, O_CREAT | O_RDWR | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 * MiB), ==, 0);
    close(fd);

    g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
                                G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                                &t->server, &err));
    g_assert_no_error(err);

    deadline = g_get_monotonic_time() + TIMEOUT_US;
    while (!g_file_test(t->sock, G_FILE_TEST_EXISTS)) {
        g_assert_false(server_exited(t));
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

static void server_stop(TestNvme *t)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    /* The server shuts down by itself when its client hangs up */
    while (!server_exited(t)) {
        if (g_get_monotonic_time() > deadline) {
            kill(t->server, SIGKILL);
            waitpid(t->server, NULL, 0);
            break;
        }
        g_usleep(10 * 1000);
    }
    g_spawn_close_pid(t->server);
}

static TestNvme *test_start(void)
{
    TestNvme *t = g_new0(TestNvme, 1);
    g_autoptr(GError) err = NULL;
    uint8_t msix_cap;

    t->dir = g_dir_make_tmp("vfio-user-nvme-XXXXXX", &err);
    g_assert_no_error(err);
    t->sock = g_build_filename(t->dir, "vfu.sock", NULL);
    server_start(t);

    /* vfio-user shares guest memory with the server: it must be an fd */
    t->qs = qtest_pc_boot(
        "-machine q35,memory-backend=m0 -nodefaults "
        "-object memory-backend-memfd,id=m0,size=256M,share=on "
        "-device '{\"driver\":\"vfio-user-pci\",\"id\":\"nvme\","
        "\"bus\":\"pcie.0\",\"addr\":\"0x4\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}'", t->sock);

    t->dev = qpci_device_find(t->qs->pcibus, QPCI_DEVFN(4, 0));
    g_assert_nonnull(t->dev);
    qpci_device_enable(t->dev);
    /* QEMU's nvme keeps its MSI-X table in BAR 0: map that BAR once */
    qpci_msix_enable(t->dev);
    msix_cap = qpci_find_capability(t->dev, PCI_CAP_ID_MSIX, 0);
    g_assert_cmpuint(qpci_config_readl(t->dev, msix_cap + PCI_MSIX_TABLE) &
                     PCI_MSIX_TABLE_BIR, ==, 0);
    t->bar0 = t->dev->msix_table_bar;
    t->msi_addr = guest_alloc(&t->qs->alloc, 4096);
    return t;
}

static void test_end(TestNvme *t)
{
    g_autofree char *img = g_build_filename(t->dir, "nvme.img", NULL);

    qpci_msix_disable(t->dev);
    g_free(t->dev);
    qtest_pc_shutdown(t->qs);
    server_stop(t);

    unlink(img);
    unlink(t->sock);
    rmdir(t->dir);
    g_free(t->sock);
    g_free(t->dir);
    g_free(t);
}

static uint32_t bar_readl(TestNvme *t, uint64_t off)
{
    return qpci_io_readl(t->dev, t->bar0, off);
}

static void bar_writel(TestNvme *t, uint64_t off, uint32_t val)
{
    qpci_io_writel(t->dev, t->bar0, off, val);
}

static void bar_writeq(TestNvme *t, uint64_t off, uint64_t val)
{
    bar_writel(t, off, val);
    bar_writel(t, off + 4, val >> 32);
}

/* Program MSI-X table entry @vector to write MSI_DATA(vector) into RAM */
static void msix_program(TestNvme *t, uint16_t vector, bool masked)
{
    uint64_t entry = t->dev->msix_table_off + vector * PCI_MSIX_ENTRY_SIZE;
    uint64_t addr = t->msi_addr + 4 * vector;

    qtest_writel(t->qs->qts, addr, 0);
    qpci_io_writel(t->dev, t->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_LOWER_ADDR, addr);
    qpci_io_writel(t->dev, t->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_UPPER_ADDR, addr >> 32);
    qpci_io_writel(t->dev, t->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_DATA, MSI_DATA(vector));
    qpci_io_writel(t->dev, t->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_VECTOR_CTRL,
                   masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
}

static bool msix_received(TestNvme *t, uint16_t vector)
{
    return qtest_readl(t->qs->qts, t->msi_addr + 4 * vector) ==
           MSI_DATA(vector);
}

static bool msix_wait(TestNvme *t, uint16_t vector)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    while (!msix_received(t, vector)) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        g_usleep(1000);
    }
    return true;
}

static void queue_init(TestNvme *t, NvmeQueue *q, uint16_t id)
{
    q->id = id;
    q->sq = guest_alloc(&t->qs->alloc, QUEUE_SIZE * sizeof(NvmeCmd));
    q->cq = guest_alloc(&t->qs->alloc, QUEUE_SIZE * sizeof(NvmeCqe));
    qtest_memset(t->qs->qts, q->cq, 0, QUEUE_SIZE * sizeof(NvmeCqe));
    q->sq_tail = 0;
    q->cq_head = 0;
    q->phase = 1;
}

static void submit(TestNvme *t, NvmeQueue *q, NvmeCmd *cmd)
{
    cmd->cid = cpu_to_le16(++t->cid);
    qtest_memwrite(t->qs->qts, q->sq + q->sq_tail * sizeof(*cmd),
                   cmd, sizeof(*cmd));
    q->sq_tail = (q->sq_tail + 1) % QUEUE_SIZE;
    bar_writel(t, SQ_TAIL_DB(q->id), q->sq_tail);
}

/* Wait for the next completion on @q; returns its status field */
static uint16_t complete(TestNvme *t, NvmeQueue *q)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    uint64_t addr = q->cq + q->cq_head * sizeof(NvmeCqe);
    NvmeCqe cqe;

    for (;;) {
        qtest_memread(t->qs->qts, addr, &cqe, sizeof(cqe));
        if ((le16_to_cpu(cqe.status) & 1) == q->phase) {
            break;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
    g_assert_cmpuint(le16_to_cpu(cqe.cid), ==, t->cid);
    q->cq_head = (q->cq_head + 1) % QUEUE_SIZE;
    if (!q->cq_head) {
        q->phase ^= 1;
    }
    bar_writel(t, CQ_HEAD_DB(q->id), q->cq_head);
    return le16_to_cpu(cqe.status) >> 1;
}

static void wait_csts_rdy(TestNvme *t, uint32_t rdy)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    while ((bar_readl(t, NVME_REG_CSTS) & NVME_CSTS_READY) != rdy) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

/* Reset the controller and bring it up with an admin queue on vector 0 */
static void controller_enable(TestNvme *t)
{
    bar_writel(t, NVME_REG_CC, 0);
    wait_csts_rdy(t, 0);

    queue_init(t, &t->admin, 0);
    bar_writel(t, NVME_REG_AQA, (QUEUE_SIZE - 1) << 16 | (QUEUE_SIZE - 1));
    bar_writeq(t, NVME_REG_ASQ, t->admin.sq);
    bar_writeq(t, NVME_REG_ACQ, t->admin.cq);
    /* EN, NVM command set, 4 KiB pages, 64-byte SQEs, 16-byte CQEs */
    bar_writel(t, NVME_REG_CC, 1 | 6 << 16 | 4 << 20);
    wait_csts_rdy(t, NVME_CSTS_READY);
}

/* Create I/O queue pair 1, interrupting on MSI-X @vector */
static void io_queue_create(TestNvme *t, uint16_t vector)
{
    NvmeCmd cmd = { .opcode = NVME_ADM_CMD_CREATE_CQ };

    queue_init(t, &t->io, 1);
    cmd.dptr.prp1 = cpu_to_le64(t->io.cq);
    cmd.cdw10 = cpu_to_le32((QUEUE_SIZE - 1) << 16 | t->io.id);
    /* physically contiguous, interrupts enabled, vector */
    cmd.cdw11 = cpu_to_le32(vector << 16 | 2 | 1);
    submit(t, &t->admin, &cmd);
    g_assert_cmphex(complete(t, &t->admin), ==, NVME_SUCCESS);

    memset(&cmd, 0, sizeof(cmd));
    cmd.opcode = NVME_ADM_CMD_CREATE_SQ;
    cmd.dptr.prp1 = cpu_to_le64(t->io.sq);
    cmd.cdw10 = cpu_to_le32((QUEUE_SIZE - 1) << 16 | t->io.id);
    cmd.cdw11 = cpu_to_le32(t->io.id << 16 | 1);
    submit(t, &t->admin, &cmd);
    g_assert_cmphex(complete(t, &t->admin), ==, NVME_SUCCESS);
}

/*
 * Identify Controller completes, and the data the server wrote by DMA
 * into guest memory is the controller it was started with.
 */
static void test_admin_identify(void)
{
    TestNvme *t = test_start();
    NvmeCmd cmd = { .opcode = NVME_ADM_CMD_IDENTIFY };
    uint64_t buf = guest_alloc(&t->qs->alloc, sizeof(NvmeIdCtrl));
    NvmeIdCtrl id;

    g_assert_cmphex(qpci_config_readw(t->dev, PCI_CLASS_DEVICE), ==,
                    PCI_CLASS_STORAGE_EXPRESS);
    g_assert_cmphex(qpci_config_readb(t->dev, PCI_CLASS_PROG), ==, 0x02);

    controller_enable(t);
    cmd.dptr.prp1 = cpu_to_le64(buf);
    cmd.cdw10 = cpu_to_le32(NVME_ID_CNS_CTRL);
    submit(t, &t->admin, &cmd);
    g_assert_cmphex(complete(t, &t->admin), ==, NVME_SUCCESS);

    qtest_memread(t->qs->qts, buf, &id, sizeof(id));
    g_assert_cmpmem(id.sn, strlen(SERIAL), SERIAL, strlen(SERIAL));
    g_assert_cmphex(le16_to_cpu(id.vid), ==, PCI_VENDOR_ID_REDHAT);
    test_end(t);
}

/*
 * The admin completion interrupts the guest on MSI-X vector 0, the one
 * the guest unmasked before it enabled the controller.
 */
static void test_msix_admin_vector(void)
{
    TestNvme *t = test_start();
    NvmeCmd cmd = { .opcode = NVME_ADM_CMD_IDENTIFY };
    uint64_t buf = guest_alloc(&t->qs->alloc, sizeof(NvmeIdCtrl));

    msix_program(t, 0, false);
    controller_enable(t);
    g_assert_false(msix_received(t, 0));

    cmd.dptr.prp1 = cpu_to_le64(buf);
    cmd.cdw10 = cpu_to_le32(NVME_ID_CNS_CTRL);
    submit(t, &t->admin, &cmd);
    g_assert_cmphex(complete(t, &t->admin), ==, NVME_SUCCESS);
    g_assert_true(msix_wait(t, 0));
    test_end(t);
}

/* An I/O completion interrupts on its own queue's vector (here 3) */
static void test_msix_io_vector(void)
{
    TestNvme *t = test_start();
    NvmeCmd cmd = { .opcode = NVME_CMD_FLUSH, .nsid = cpu_to_le32(1) };

    msix_program(t, 0, false);
    msix_program(t, 3, false);
    controller_enable(t);
    io_queue_create(t, 3);
    g_assert_false(msix_received(t, 3));

    submit(t, &t->io, &cmd);
    g_assert_cmphex(complete(t, &t->io), ==, NVME_SUCCESS);
    g_assert_true(msix_wait(t, 3));
    test_end(t);
}

/*
 * A completion on a vector the guest has masked is held pending (the
 * PBA says so) and is delivered as soon as the guest unmasks it.
 */
static void test_msix_masked_then_unmasked(void)
{
    TestNvme *t = test_start();
    NvmeCmd cmd = { .opcode = NVME_CMD_FLUSH, .nsid = cpu_to_le32(1) };

    msix_program(t, 0, false);
    msix_program(t, 2, true);
    controller_enable(t);
    io_queue_create(t, 2);

    submit(t, &t->io, &cmd);
    g_assert_cmphex(complete(t, &t->io), ==, NVME_SUCCESS);
    g_assert_true(qpci_msix_pending(t->dev, 2));
    g_assert_false(msix_received(t, 2));

    qpci_io_writel(t->dev, t->dev->msix_table_bar,
                   t->dev->msix_table_off + 2 * PCI_MSIX_ENTRY_SIZE +
                   PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
    g_assert_true(msix_wait(t, 2));
    g_assert_false(qpci_msix_pending(t->dev, 2));
    test_end(t);
}

/*
 * Upstream's vfio-user-pci survives its removal: the guest ejects it
 * (ACPI PCI hotplug) and QEMU finalizes it without tripping over the
 * MSI-X PBA region (it used to abort in vfio_user_msix_teardown).
 */
static void test_unplug_vfio_user_pci(void)
{
    TestNvme t = { 0 };
    g_autoptr(GError) err = NULL;
    g_autofree char *img = NULL;
    QTestState *qts;

    t.dir = g_dir_make_tmp("vfio-user-nvme-XXXXXX", &err);
    g_assert_no_error(err);
    t.sock = g_build_filename(t.dir, "vfu.sock", NULL);
    server_start(&t);

    qts = qtest_initf(
        "-machine q35,memory-backend=m0 -nodefaults "
        "-object memory-backend-memfd,id=m0,size=256M,share=on "
        "-device pcie-root-port,id=rp1,bus=pcie.0,chassis=1 "
        "-device '{\"driver\":\"vfio-user-pci\",\"id\":\"nvme\","
        "\"bus\":\"rp1\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}'", t.sock);

    qtest_qmp_device_del_send(qts, "nvme");
    /* The guest ejects slot 0 of the port's bus (bus selector 0) */
    qtest_outl(qts, ACPI_PCIHP_ADDR_ICH9 + PCI_SEL_BASE, 0);
    g_assert_cmphex(qtest_inl(qts, ACPI_PCIHP_ADDR_ICH9 + PCI_DOWN_BASE),
                    ==, 1);
    qtest_outl(qts, ACPI_PCIHP_ADDR_ICH9 + PCI_EJ_BASE, 1);
    qtest_qmp_eventwait(qts, "DEVICE_DELETED");
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");

    qtest_quit(qts);
    server_stop(&t);
    img = g_build_filename(t.dir, "nvme.img", NULL);
    unlink(img);
    unlink(t.sock);
    rmdir(t.dir);
    g_free(t.sock);
    g_free(t.dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/vfio-user-nvme/admin/identify", test_admin_identify);
    qtest_add_func("/vfio-user-nvme/msix/admin-vector",
                   test_msix_admin_vector);
    qtest_add_func("/vfio-user-nvme/msix/io-vector", test_msix_io_vector);
    qtest_add_func("/vfio-user-nvme/msix/masked-then-unmasked",
                   test_msix_masked_then_unmasked);
    qtest_add_func("/vfio-user-nvme/unplug/vfio-user-pci-survives",
                   test_unplug_vfio_user_pci);

    return g_test_run();
}
