/*
 * NVMe passthrough hotplug: stub for emulators built without it
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-passthru-hotplug.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"

PassthruHotplugInfo *qmp_query_passthru_hotplug(Error **errp)
{
    error_setg(errp, "NVMe passthrough hotplug is not built in");
    return NULL;
}

PassthruAdmission *qmp_query_passthru_hotplug_admission(QObject *device,
                                                        Error **errp)
{
    error_setg(errp, "NVMe passthrough hotplug is not built in");
    return NULL;
}

void hmp_info_passthru_hotplug(Monitor *mon, const QDict *qdict)
{
    monitor_printf(mon, "NVMe passthrough hotplug is not built in\n");
}
