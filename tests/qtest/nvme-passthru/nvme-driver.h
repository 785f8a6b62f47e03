/*
 * A minimal NVMe driver for the passthrough hotplug qtests: the test
 * plays the guest's nvme driver for the controller on port rpN, or for
 * any NVMe controller whose BAR 0 it has mapped
 *
 * It brings the controller up with an admin queue and one I/O queue pair
 * (polled, or interrupting on an MSI-X vector), and reads, writes and
 * flushes namespace 1.  Queues and a data page live in guest RAM that the
 * vfio-user server reaches by DMA: for a controller on a port, a fixed
 * area; otherwise the area the test gives.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_QTEST_NVME_PASSTHRU_NVME_DRIVER_H
#define TESTS_QTEST_NVME_PASSTHRU_NVME_DRIVER_H

#include "qemu/units.h"
#include "block/nvme.h"
#include "harness.h"

#define NVME_DRV_QUEUE_SIZE 8
#define NVME_DRV_LBA_SIZE   512
/* Guest RAM for the queues (a page each) and the data page */
#define NVME_DRV_RAM_SIZE   (20 * KiB)

typedef struct NvmeDrvQueue {
    uint16_t id;
    uint64_t sq;
    uint64_t cq;
    uint16_t sq_tail;
    uint16_t cq_head;
    uint16_t phase;
} NvmeDrvQueue;

typedef struct NvmeDrv {
    QTestState *qts;
    QPCIDevice *dev;
    QPCIBar bar0;
    NvmeDrvQueue admin;
    NvmeDrvQueue io;
    uint64_t ram;               /* NVME_DRV_RAM_SIZE bytes of guest RAM */
    uint64_t buf;               /* one page of it for data */
    uint16_t cid;
    int inflight;               /* I/O commands submitted, not reaped */
} NvmeDrv;

/*
 * Reset the controller @dev, whose BAR 0 is mapped at @bar0, and enable
 * it with an admin queue (its completions interrupt on MSI-X vector 0).
 * Queues and the data page go to the @ram area: NVME_DRV_RAM_SIZE bytes
 * of guest RAM, page aligned.
 */
void nvme_drv_enable(NvmeDrv *d, QTestState *qts, QPCIDevice *dev,
                     QPCIBar bar0, uint64_t ram);

/*
 * Create I/O queue pair 1: polled if @vector is negative, else with
 * interrupts on MSI-X @vector
 */
void nvme_drv_create_io_queues(NvmeDrv *d, int vector);

/*
 * Submit @cmd on @q, the only command outstanding there, and wait for
 * its completion; returns its status field
 */
uint16_t nvme_drv_cmd(NvmeDrv *d, NvmeDrvQueue *q, NvmeCmd *cmd);

/*
 * Take the controller on rp@n into use (the guest has enabled it, see
 * guest_enable()): open the port's window, map BAR 0, enable the
 * controller, create I/O queue pair 1.
 */
void nvme_drv_start(NvmeDrv *d, Test *t, int n);
void nvme_drv_stop(NvmeDrv *d);

/* Write @count blocks at @lba filled with @byte; wait for completion */
void nvme_drv_write(NvmeDrv *d, uint64_t lba, int count, uint8_t byte);

/* Read one block at @lba and check that every byte is @byte */
void nvme_drv_check(NvmeDrv *d, uint64_t lba, uint8_t byte);

void nvme_drv_flush(NvmeDrv *d);

/* Submit @n one-block writes at @lba.. without waiting for them */
void nvme_drv_submit_writes(NvmeDrv *d, uint64_t lba, int n, uint8_t byte);

/* Reap every submitted I/O command; each must have succeeded */
void nvme_drv_reap(NvmeDrv *d);

/* The backing image of server @i has @count blocks of @byte at @lba */
void check_image(Test *t, int i, uint64_t lba, int count, uint8_t byte);

#endif
