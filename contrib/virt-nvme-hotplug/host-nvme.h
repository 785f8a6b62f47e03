/*
 * virt-nvme-hotplug: what the host does with one of its NVMe controllers
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VIRT_NVME_HOTPLUG_HOST_NVME_H
#define VIRT_NVME_HOTPLUG_HOST_NVME_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Prefix of /sys and /proc for every read, or NULL (the tests point it
 * at a fake tree with VIRT_NVME_HOTPLUG_ROOT)
 */
extern const char *host_root;

/* "01:00.0" or "0000:01:00.0" -> "0000:01:00.0"; false if malformed */
bool host_parse_bdf(const char *in, char *bdf, size_t size);

/*
 * May the host NVMe BDF be handed to a guest?  It must exist, be an NVMe
 * controller, and, unless it is already bound to vfio-pci, none of its
 * namespaces (or their partitions, or multipath heads) may be mounted,
 * swap, or held by LVM, MD or device-mapper: libvirt's managed detach
 * would take it away from the host without asking.  On false, WHY says
 * why, in a sentence.
 */
bool host_nvme_check(const char *bdf, char *why, size_t size);

#endif
