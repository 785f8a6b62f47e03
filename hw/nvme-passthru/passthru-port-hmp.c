/*
 * pcie-hotplug-passthru: info passthru-hotplug
 *
 * query-passthru-hotplug for a person at the monitor: one line a port,
 * with its state, its device and backend, and the operation pending
 * with the time it has been pending.
 *
 *   Passthrough hotplug: acpi mode, 1 of 32 devices, 2 ports
 *   port  chassis/slot  state   device  transport  backend       pending
 *   rp1   1/0           adding  nvme0   vfio-user  /run/n0.sock  add, 12 ms
 *   rp2   2/0           empty   -       -          -             -
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

enum { COL_PORT, COL_SLOT, COL_STATE, COL_DEVICE, COL_TRANSPORT,
       COL_BACKEND, COL_PENDING, N_COLS };

static const char *const headings[N_COLS] = {
    "port", "chassis/slot", "state", "device", "transport", "backend",
    "pending",
};

/* The cells of @port's line */
static void port_cells(PassthruPortInfo *port, char **cells)
{
    cells[COL_PORT] = g_strdup(port->id);
    cells[COL_SLOT] = g_strdup_printf("%u/%u", port->chassis, port->slot);
    cells[COL_STATE] = g_strdup(PassthruPortState_str(port->state));
    cells[COL_DEVICE] = g_strdup(port->device ?: "-");
    cells[COL_TRANSPORT] = g_strdup(port->has_transport ?
                                    PassthruTransport_str(port->transport) :
                                    "-");
    cells[COL_BACKEND] = g_strdup(port->backend ?: "-");
    cells[COL_PENDING] = port->has_operation ?
        g_strdup_printf("%s, %" PRIu64 " ms",
                        PassthruHotplugOperation_str(port->operation),
                        port->elapsed_ms) :
        g_strdup("-");
}

static void print_line(Monitor *mon, char *const *cells, const int *width)
{
    int i;

    for (i = 0; i < N_COLS - 1; i++) {
        monitor_printf(mon, "%-*s  ", width[i], cells[i]);
    }
    monitor_printf(mon, "%s\n", cells[N_COLS - 1]);
}

void hmp_info_passthru_hotplug(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    g_autoptr(PassthruHotplugInfo) info = qmp_query_passthru_hotplug(&err);
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(
        (GDestroyNotify)g_strfreev);
    PassthruPortInfoList *l;
    int width[N_COLS];
    unsigned devices = 0;
    guint i;
    int c;

    if (hmp_handle_error(mon, err)) {
        return;
    }
    if (!info->enabled) {
        monitor_printf(mon, "Passthrough hotplug: off (no "
                       "pcie-hotplug-passthru port)\n");
        return;
    }
    for (c = 0; c < N_COLS; c++) {
        width[c] = strlen(headings[c]);
    }
    for (l = info->ports; l; l = l->next) {
        char **cells = g_new0(char *, N_COLS + 1);

        port_cells(l->value, cells);
        for (c = 0; c < N_COLS; c++) {
            width[c] = MAX(width[c], (int)strlen(cells[c]));
        }
        devices += !!l->value->device;
        g_ptr_array_add(lines, cells);
    }

    monitor_printf(mon, "Passthrough hotplug: %s mode, %u of %u devices, "
                   "%u ports\n",
                   PassthruHotplugMode_str(info->hotplug_mode), devices,
                   info->max_devices, lines->len);
    print_line(mon, (char *const *)headings, width);
    for (i = 0; i < lines->len; i++) {
        print_line(mon, g_ptr_array_index(lines, i), width);
    }
}
