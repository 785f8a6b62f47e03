/*
 * Fuzz targets for NVMe passthrough hotplug
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef NVME_PASSTHRU_FUZZ_H
#define NVME_PASSTHRU_FUZZ_H

/*
 * The passthrough hotplug policy requires -overcommit mem-lock=on, and
 * QEMU then calls mlockall(MCL_CURRENT | MCL_FUTURE).  Under
 * AddressSanitizer that would try to lock terabytes of shadow memory:
 * the fuzz binary is linked with -Wl,--wrap=mlockall (meson.build), and
 * this stands in for it.
 */
int __wrap_mlockall(int flags);

#endif
