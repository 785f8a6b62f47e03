/*
 * A minimal NVMe driver for the passthrough hotplug qtests: the test
 * plays the guest's nvme driver for the controller on port rpN
 *
 * It opens the port's memory window, maps BAR 0, brings the controller
 * up with an admin queue and one I/O queue pair (polled, no interrupts),
 * and reads, writes and flushes namespace 1.  Queues and buffers live in
 * a fixed area of guest RAM that the vfio-user server reaches by DMA.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_QTEST_NVME_PASSTHRU_NVME_DRIVER_H
#define TESTS_QTEST_NVME_PASSTHRU_NVME_DRIVER_H

#include "harness.h"

#define NVME_DRV_QUEUE_SIZE 8
#define NVME_DRV_LBA_SIZE   512

typedef struct NvmeDrvQueue {
    uint16_t id;
    uint64_t sq;
    uint64_t cq;
    uint16_t sq_tail;
    uint16_t cq_head;
    uint16_t phase;
} NvmeDrvQueue;

typedef struct NvmeDrv {
    Test *t;
    QPCIDevice *dev;
    QPCIBar bar0;
    NvmeDrvQueue admin;
    NvmeDrvQueue io;
    uint64_t buf;               /* one page of guest RAM for data */
    uint16_t cid;
    int inflight;               /* I/O commands submitted, not reaped */
} NvmeDrv;

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
