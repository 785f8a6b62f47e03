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
#include "libqos/libqos-pc.h"
#include "nvme-passthru/nvme-driver.h"

#define MSI_DATA(v)     (0x4e560000u | (v))

typedef struct TestNvme {
    Test *t;                    /* the test folder and the server */
    QOSState *qs;
    QPCIDevice *dev;
    uint64_t msi_addr;
    NvmeDrv drv;
} TestNvme;

static TestNvme *test_nvme_start(void)
{
    TestNvme *tn = g_new0(TestNvme, 1);
    uint8_t msix_cap;

    tn->t = test_new();
    server_start(tn->t, 0, SERVER_NVME);

    /* vfio-user shares guest memory with the server: it must be an fd */
    tn->qs = qtest_pc_boot(
        "-machine q35,memory-backend=m0 -nodefaults "
        "-object memory-backend-memfd,id=m0,size=256M,share=on "
        "-device '{\"driver\":\"vfio-user-pci\",\"id\":\"nvme\","
        "\"bus\":\"pcie.0\",\"addr\":\"0x4\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}'",
        tn->t->srv[0].sock);

    tn->dev = qpci_device_find(tn->qs->pcibus, QPCI_DEVFN(4, 0));
    g_assert_nonnull(tn->dev);
    qpci_device_enable(tn->dev);
    /* QEMU's nvme keeps its MSI-X table in BAR 0: map that BAR once */
    qpci_msix_enable(tn->dev);
    msix_cap = qpci_find_capability(tn->dev, PCI_CAP_ID_MSIX, 0);
    g_assert_cmpuint(qpci_config_readl(tn->dev,
                                       msix_cap + PCI_MSIX_TABLE) &
                     PCI_MSIX_TABLE_BIR, ==, 0);
    tn->msi_addr = guest_alloc(&tn->qs->alloc, 4096);
    return tn;
}

/* Reset the controller and bring it up with an admin queue on vector 0 */
static void controller_enable(TestNvme *tn)
{
    nvme_drv_enable(&tn->drv, tn->qs->qts, tn->dev,
                    tn->dev->msix_table_bar,
                    guest_alloc(&tn->qs->alloc, NVME_DRV_RAM_SIZE));
}

static void test_nvme_end(TestNvme *tn)
{
    qpci_msix_disable(tn->dev);
    g_free(tn->dev);
    qtest_pc_shutdown(tn->qs);
    /* The server shuts down by itself when its client hangs up */
    server_wait_exit(&tn->t->srv[0]);
    test_free(tn->t);
    g_free(tn);
}

/* Program MSI-X table entry @vector to write MSI_DATA(vector) into RAM */
static void msix_program(TestNvme *tn, uint16_t vector, bool masked)
{
    uint64_t entry = tn->dev->msix_table_off + vector * PCI_MSIX_ENTRY_SIZE;
    uint64_t addr = tn->msi_addr + 4 * vector;

    qtest_writel(tn->qs->qts, addr, 0);
    qpci_io_writel(tn->dev, tn->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_LOWER_ADDR, addr);
    qpci_io_writel(tn->dev, tn->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_UPPER_ADDR, addr >> 32);
    qpci_io_writel(tn->dev, tn->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_DATA, MSI_DATA(vector));
    qpci_io_writel(tn->dev, tn->dev->msix_table_bar,
                   entry + PCI_MSIX_ENTRY_VECTOR_CTRL,
                   masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
}

static bool msix_received(TestNvme *tn, uint16_t vector)
{
    return qtest_readl(tn->qs->qts, tn->msi_addr + 4 * vector) ==
           MSI_DATA(vector);
}

static bool msix_wait(TestNvme *tn, uint16_t vector)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    while (!msix_received(tn, vector)) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        g_usleep(1000);
    }
    return true;
}

/*
 * Identify Controller completes, and the data the server wrote by DMA
 * into guest memory is the controller it was started with.
 */
static void test_admin_identify(void)
{
    TestNvme *tn = test_nvme_start();
    NvmeCmd cmd = { .opcode = NVME_ADM_CMD_IDENTIFY };
    NvmeIdCtrl id;

    g_assert_cmphex(qpci_config_readw(tn->dev, PCI_CLASS_DEVICE), ==,
                    PCI_CLASS_STORAGE_EXPRESS);
    g_assert_cmphex(qpci_config_readb(tn->dev, PCI_CLASS_PROG), ==, 0x02);

    controller_enable(tn);
    cmd.dptr.prp1 = cpu_to_le64(tn->drv.buf);
    cmd.cdw10 = cpu_to_le32(NVME_ID_CNS_CTRL);
    g_assert_cmphex(nvme_drv_cmd(&tn->drv, &tn->drv.admin, &cmd), ==,
                    NVME_SUCCESS);

    qtest_memread(tn->qs->qts, tn->drv.buf, &id, sizeof(id));
    g_assert_cmpmem(id.sn, strlen(SERVER_SERIAL), SERVER_SERIAL,
                    strlen(SERVER_SERIAL));
    g_assert_cmphex(le16_to_cpu(id.vid), ==, PCI_VENDOR_ID_REDHAT);
    test_nvme_end(tn);
}

/*
 * The admin completion interrupts the guest on MSI-X vector 0, the one
 * the guest unmasked before it enabled the controller.
 */
static void test_msix_admin_vector(void)
{
    TestNvme *tn = test_nvme_start();
    NvmeCmd cmd = { .opcode = NVME_ADM_CMD_IDENTIFY };

    msix_program(tn, 0, false);
    controller_enable(tn);
    g_assert_false(msix_received(tn, 0));

    cmd.dptr.prp1 = cpu_to_le64(tn->drv.buf);
    cmd.cdw10 = cpu_to_le32(NVME_ID_CNS_CTRL);
    g_assert_cmphex(nvme_drv_cmd(&tn->drv, &tn->drv.admin, &cmd), ==,
                    NVME_SUCCESS);
    g_assert_true(msix_wait(tn, 0));
    test_nvme_end(tn);
}

/* An I/O completion interrupts on its own queue's vector (here 3) */
static void test_msix_io_vector(void)
{
    TestNvme *tn = test_nvme_start();
    NvmeCmd cmd = { .opcode = NVME_CMD_FLUSH, .nsid = cpu_to_le32(1) };

    msix_program(tn, 0, false);
    msix_program(tn, 3, false);
    controller_enable(tn);
    nvme_drv_create_io_queues(&tn->drv, 3);
    g_assert_false(msix_received(tn, 3));

    g_assert_cmphex(nvme_drv_cmd(&tn->drv, &tn->drv.io, &cmd), ==,
                    NVME_SUCCESS);
    g_assert_true(msix_wait(tn, 3));
    test_nvme_end(tn);
}

/*
 * A completion on a vector the guest has masked is held pending (the
 * PBA says so) and is delivered as soon as the guest unmasks it.
 */
static void test_msix_masked_then_unmasked(void)
{
    TestNvme *tn = test_nvme_start();
    NvmeCmd cmd = { .opcode = NVME_CMD_FLUSH, .nsid = cpu_to_le32(1) };

    msix_program(tn, 0, false);
    msix_program(tn, 2, true);
    controller_enable(tn);
    nvme_drv_create_io_queues(&tn->drv, 2);

    g_assert_cmphex(nvme_drv_cmd(&tn->drv, &tn->drv.io, &cmd), ==,
                    NVME_SUCCESS);
    g_assert_true(qpci_msix_pending(tn->dev, 2));
    g_assert_false(msix_received(tn, 2));

    qpci_io_writel(tn->dev, tn->dev->msix_table_bar,
                   tn->dev->msix_table_off + 2 * PCI_MSIX_ENTRY_SIZE +
                   PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
    g_assert_true(msix_wait(tn, 2));
    g_assert_false(qpci_msix_pending(tn->dev, 2));
    test_nvme_end(tn);
}

/*
 * MSI-X turned on with a hole: vector 0 masked, vector 1 not.  vfio-pci
 * puts vector 1 to use while vector 0 was never set up, and committing
 * the batch of MSI routes dereferenced vector 0's NULL device: any guest
 * could crash QEMU so (patches/0027).  Vector 1 must work.
 */
static void test_msix_enable_with_hole(void)
{
    TestNvme *tn = test_nvme_start();
    NvmeCmd cmd = { .opcode = NVME_CMD_FLUSH, .nsid = cpu_to_le32(1) };
    uint8_t cap = qpci_find_capability(tn->dev, PCI_CAP_ID_MSIX, 0);
    uint16_t flags = qpci_config_readw(tn->dev, cap + PCI_MSIX_FLAGS);

    qpci_config_writew(tn->dev, cap + PCI_MSIX_FLAGS,
                       flags & ~PCI_MSIX_FLAGS_ENABLE);
    msix_program(tn, 0, true);
    msix_program(tn, 1, false);
    qpci_config_writew(tn->dev, cap + PCI_MSIX_FLAGS,
                       flags | PCI_MSIX_FLAGS_ENABLE);

    controller_enable(tn);
    nvme_drv_create_io_queues(&tn->drv, 1);
    g_assert_cmphex(nvme_drv_cmd(&tn->drv, &tn->drv.io, &cmd), ==,
                    NVME_SUCCESS);
    g_assert_true(msix_wait(tn, 1));
    test_nvme_end(tn);
}

/*
 * Upstream's vfio-user-pci survives its removal: the guest ejects it
 * (ACPI PCI hotplug) and QEMU finalizes it without tripping over the
 * MSI-X PBA region (it used to abort in vfio_user_msix_teardown).
 */
static void test_unplug_vfio_user_pci(void)
{
    Test *t = test_new();
    QTestState *qts;

    server_start(t, 0, SERVER_NVME);
    qts = qtest_initf(
        "-machine q35,memory-backend=m0 -nodefaults "
        "-object memory-backend-memfd,id=m0,size=256M,share=on "
        "-device pcie-root-port,id=rp1,bus=pcie.0,chassis=1 "
        "-device '{\"driver\":\"vfio-user-pci\",\"id\":\"nvme\","
        "\"bus\":\"rp1\","
        "\"socket\":{\"type\":\"unix\",\"path\":\"%s\"}}'",
        t->srv[0].sock);

    qtest_qmp_device_del_send(qts, "nvme");
    /* The guest ejects slot 0 of the port's bus (bus selector 0) */
    qtest_outl(qts, ACPI_PCIHP_ADDR_ICH9 + PCI_SEL_BASE, 0);
    g_assert_cmphex(qtest_inl(qts, ACPI_PCIHP_ADDR_ICH9 + PCI_DOWN_BASE),
                    ==, 1);
    qtest_outl(qts, ACPI_PCIHP_ADDR_ICH9 + PCI_EJ_BASE, 1);
    qtest_qmp_eventwait(qts, "DEVICE_DELETED");
    qtest_qmp_assert_success(qts, "{'execute': 'query-status'}");

    qtest_quit(qts);
    server_wait_exit(&t->srv[0]);
    test_free(t);
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
    qtest_add_func("/vfio-user-nvme/msix/enabled-with-a-hole",
                   test_msix_enable_with_hole);
    qtest_add_func("/vfio-user-nvme/unplug/vfio-user-pci-survives",
                   test_unplug_vfio_user_pci);

    return g_test_run();
}
