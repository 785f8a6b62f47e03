/*
 * watch: place newly inserted NVMe drives into a running VM
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef NVME_HOST_WATCH_H
#define NVME_HOST_WATCH_H

#include <stdbool.h>

/*
 * React to uevents (the kernel's netlink socket, or UEVENTS, a file or
 * fifo) until the end of UEVENTS or a signal; returns the exit status.
 */
int nph_watch(const char *policy, const char *uevents, bool json,
              double timeout_s);

#endif
