/*
 * NVMe passthrough hotplug: refusals, as device_add and the admission
 * query report them
 *
 * The rules (the port's, its devices', the VM's) report a refusal here
 * with a stable code and a message.  device_add's check turns the first
 * into its error and stops; the admission query's lists them all.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "hw/nvme-passthru/nvme-passthru.h"
#include "trace.h"

bool passthru_refuse(PassthruCheck *c, PassthruRefusalCode code,
                     const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    PassthruRefusal *r;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);

    c->refused = true;
    trace_passthru_refused(c->tail ? "admission" : "device_add",
                           PassthruRefusalCode_str(code), msg);
    if (!c->tail) {
        error_setg(c->errp, "%s", msg);
        return false;
    }
    r = g_new0(PassthruRefusal, 1);
    r->code = code;
    r->message = g_steal_pointer(&msg);
    QAPI_LIST_APPEND(c->tail, r);
    return true;
}
