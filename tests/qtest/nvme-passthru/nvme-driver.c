/*
 * A minimal NVMe driver for the passthrough hotplug qtests (see
 * nvme-driver.h)
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "nvme-driver.h"

/* Guest RAM for queues and buffers: above what the tests' VMs use */
#define DRV_RAM_BASE    (16 * MiB)

/* Doorbells, for a doorbell stride of 0 (CAP.DSTRD) */
#define SQ_TAIL_DB(q)   (0x1000 + 8 * (q))
#define CQ_HEAD_DB(q)   (0x1000 + 8 * (q) + 4)

static uint32_t bar_readl(NvmeDrv *d, uint64_t off)
{
    return qpci_io_readl(d->dev, d->bar0, off);
}

static void bar_writel(NvmeDrv *d, uint64_t off, uint32_t val)
{
    qpci_io_writel(d->dev, d->bar0, off, val);
}

static void bar_writeq(NvmeDrv *d, uint64_t off, uint64_t val)
{
    bar_writel(d, off, val);
    bar_writel(d, off + 4, val >> 32);
}

/*
 * The port forwards memory accesses to BAR 0 only inside its memory
 * window, and the device's DMA only with bus mastering on.
 */
static void port_open_window(Test *t, int n, uint64_t addr, uint64_t size)
{
    g_autofree QPCIDevice *port = port_dev(t, n);
    uint64_t base = addr & ~(uint64_t)(1 * MiB - 1);
    uint64_t limit = (addr + size - 1) | (1 * MiB - 1);

    g_assert_cmphex(limit, <, 4 * GiB);
    qpci_config_writew(port, PCI_MEMORY_BASE, base >> 16);
    qpci_config_writew(port, PCI_MEMORY_LIMIT, limit >> 16);
    qpci_config_writew(port, PCI_COMMAND,
                       qpci_config_readw(port, PCI_COMMAND) |
                       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static void queue_init(NvmeDrv *d, NvmeDrvQueue *q, uint16_t id,
                       uint64_t ram)
{
    q->id = id;
    /* Each queue in a page of its own: the controller wants them aligned */
    q->sq = ram;
    q->cq = ram + 4 * KiB;
    qtest_memset(d->qts, q->cq, 0, NVME_DRV_QUEUE_SIZE * sizeof(NvmeCqe));
    q->sq_tail = 0;
    q->cq_head = 0;
    q->phase = 1;
}

static void submit(NvmeDrv *d, NvmeDrvQueue *q, NvmeCmd *cmd)
{
    cmd->cid = cpu_to_le16(++d->cid);
    qtest_memwrite(d->qts, q->sq + q->sq_tail * sizeof(*cmd),
                   cmd, sizeof(*cmd));
    q->sq_tail = (q->sq_tail + 1) % NVME_DRV_QUEUE_SIZE;
    bar_writel(d, SQ_TAIL_DB(q->id), q->sq_tail);
}

/* Wait for the next completion on @q, and take it */
static NvmeCqe complete_cqe(NvmeDrv *d, NvmeDrvQueue *q)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    uint64_t addr = q->cq + q->cq_head * sizeof(NvmeCqe);
    NvmeCqe cqe;

    for (;;) {
        qtest_memread(d->qts, addr, &cqe, sizeof(cqe));
        if ((le16_to_cpu(cqe.status) & 1) == q->phase) {
            break;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
    q->cq_head = (q->cq_head + 1) % NVME_DRV_QUEUE_SIZE;
    if (!q->cq_head) {
        q->phase ^= 1;
    }
    bar_writel(d, CQ_HEAD_DB(q->id), q->cq_head);
    return cqe;
}

/* Wait for the next completion on @q; returns its status field */
static uint16_t complete(NvmeDrv *d, NvmeDrvQueue *q)
{
    return le16_to_cpu(complete_cqe(d, q).status) >> 1;
}

uint16_t nvme_drv_cmd(NvmeDrv *d, NvmeDrvQueue *q, NvmeCmd *cmd)
{
    NvmeCqe cqe;

    submit(d, q, cmd);
    cqe = complete_cqe(d, q);
    g_assert_cmpuint(le16_to_cpu(cqe.cid), ==, d->cid);
    return le16_to_cpu(cqe.status) >> 1;
}

static void wait_csts_rdy(NvmeDrv *d, uint32_t rdy)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    while ((bar_readl(d, NVME_REG_CSTS) & NVME_CSTS_READY) != rdy) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

void nvme_drv_enable(NvmeDrv *d, QTestState *qts, QPCIDevice *dev,
                     QPCIBar bar0, uint64_t ram)
{
    memset(d, 0, sizeof(*d));
    d->qts = qts;
    d->dev = dev;
    d->bar0 = bar0;
    d->ram = ram;
    d->buf = ram + 16 * KiB;

    /* Reset, then enable with the admin queue */
    bar_writel(d, NVME_REG_CC, 0);
    wait_csts_rdy(d, 0);
    queue_init(d, &d->admin, 0, ram);
    bar_writel(d, NVME_REG_AQA,
               (NVME_DRV_QUEUE_SIZE - 1) << 16 | (NVME_DRV_QUEUE_SIZE - 1));
    bar_writeq(d, NVME_REG_ASQ, d->admin.sq);
    bar_writeq(d, NVME_REG_ACQ, d->admin.cq);
    /* EN, NVM command set, 4 KiB pages, 64-byte SQEs, 16-byte CQEs */
    bar_writel(d, NVME_REG_CC, 1 | 6 << 16 | 4 << 20);
    wait_csts_rdy(d, NVME_CSTS_READY);
}

void nvme_drv_create_io_queues(NvmeDrv *d, int vector)
{
    NvmeCmd cmd = { .opcode = NVME_ADM_CMD_CREATE_CQ };

    queue_init(d, &d->io, 1, d->ram + 8 * KiB);
    cmd.dptr.prp1 = cpu_to_le64(d->io.cq);
    cmd.cdw10 = cpu_to_le32((NVME_DRV_QUEUE_SIZE - 1) << 16 | d->io.id);
    /* physically contiguous; interrupts enabled, on @vector */
    cmd.cdw11 = cpu_to_le32(vector < 0 ? 1 : vector << 16 | 2 | 1);
    g_assert_cmphex(nvme_drv_cmd(d, &d->admin, &cmd), ==, NVME_SUCCESS);

    memset(&cmd, 0, sizeof(cmd));
    cmd.opcode = NVME_ADM_CMD_CREATE_SQ;
    cmd.dptr.prp1 = cpu_to_le64(d->io.sq);
    cmd.cdw10 = cpu_to_le32((NVME_DRV_QUEUE_SIZE - 1) << 16 | d->io.id);
    cmd.cdw11 = cpu_to_le32(d->io.id << 16 | 1);
    g_assert_cmphex(nvme_drv_cmd(d, &d->admin, &cmd), ==, NVME_SUCCESS);
}

void nvme_drv_start(NvmeDrv *d, Test *t, int n)
{
    QPCIDevice *dev = nvme_dev(t, n);
    QPCIBar bar0;
    uint64_t size;

    bar0 = qpci_iomap(dev, 0, &size);
    port_open_window(t, n, bar0.addr, size);
    nvme_drv_enable(d, t->qts, dev, bar0, DRV_RAM_BASE);
    nvme_drv_create_io_queues(d, -1);
}

void nvme_drv_stop(NvmeDrv *d)
{
    g_free(d->dev);
    d->dev = NULL;
}

static void io_submit(NvmeDrv *d, uint8_t opcode, uint64_t lba, int count,
                      uint64_t buf)
{
    NvmeCmd cmd = { .opcode = opcode, .nsid = cpu_to_le32(1) };

    g_assert_cmpint(count * NVME_DRV_LBA_SIZE, <=, 4 * KiB);
    g_assert_cmpint(d->inflight, <, NVME_DRV_QUEUE_SIZE - 1);
    if (opcode != NVME_CMD_FLUSH) {
        cmd.dptr.prp1 = cpu_to_le64(buf);
        cmd.cdw10 = cpu_to_le32(lba);
        cmd.cdw11 = cpu_to_le32(lba >> 32);
        cmd.cdw12 = cpu_to_le32(count - 1);
    }
    submit(d, &d->io, &cmd);
    d->inflight++;
}

void nvme_drv_reap(NvmeDrv *d)
{
    while (d->inflight) {
        g_assert_cmphex(complete(d, &d->io), ==, NVME_SUCCESS);
        d->inflight--;
    }
}

void nvme_drv_write(NvmeDrv *d, uint64_t lba, int count, uint8_t byte)
{
    qtest_memset(d->qts, d->buf, byte, count * NVME_DRV_LBA_SIZE);
    io_submit(d, NVME_CMD_WRITE, lba, count, d->buf);
    nvme_drv_reap(d);
}

void nvme_drv_check(NvmeDrv *d, uint64_t lba, uint8_t byte)
{
    uint8_t data[NVME_DRV_LBA_SIZE];
    int i;

    qtest_memset(d->qts, d->buf, ~byte, sizeof(data));
    io_submit(d, NVME_CMD_READ, lba, 1, d->buf);
    nvme_drv_reap(d);
    qtest_memread(d->qts, d->buf, data, sizeof(data));
    for (i = 0; i < sizeof(data); i++) {
        g_assert_cmphex(data[i], ==, byte);
    }
}

void nvme_drv_flush(NvmeDrv *d)
{
    io_submit(d, NVME_CMD_FLUSH, 0, 0, 0);
    nvme_drv_reap(d);
}

void nvme_drv_submit_writes(NvmeDrv *d, uint64_t lba, int n, uint8_t byte)
{
    int i;

    qtest_memset(d->qts, d->buf, byte, NVME_DRV_LBA_SIZE);
    for (i = 0; i < n; i++) {
        io_submit(d, NVME_CMD_WRITE, lba + i, 1, d->buf);
    }
}

void check_image(Test *t, int i, uint64_t lba, int count, uint8_t byte)
{
    g_autofree char *img = g_strdup_printf("%s/nvme%d.img", t->dir, i);
    g_autofree char *data = NULL;
    g_autoptr(GError) err = NULL;
    gsize len;
    int k;

    g_assert_true(g_file_get_contents(img, &data, &len, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(len, >=, (lba + count) * NVME_DRV_LBA_SIZE);
    for (k = 0; k < count * NVME_DRV_LBA_SIZE; k++) {
        g_assert_cmphex((uint8_t)data[lba * NVME_DRV_LBA_SIZE + k], ==, byte);
    }
}
