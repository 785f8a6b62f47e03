/*
 * pcie-hotplug-passthru: query-passthru-hotplug
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-passthru-hotplug.h"
#include "hw/pci/pcie_port.h"
#include "hw/southbridge/ich9.h"
#include "hw/vfio/pci.h"
#include "passthru-port.h"

static PassthruPortInfo *port_info(PCIEHotplugPassthru *p)
{
    PassthruPortInfo *info = g_new0(PassthruPortInfo, 1);
    PCIESlot *slot = PCIE_SLOT(p);

    info->id = g_strdup(passthru_port_id(p));
    info->chassis = slot->chassis;
    info->slot = slot->slot;
    info->state = p->state;
    if (p->dev) {
        VFIOPCIDevice *vdev = VFIO_PCI_DEVICE(p->dev);
        const char *name = vdev->vbasedev.name ?: "";

        info->device = g_strdup(passthru_dev_id(p->dev));
        info->has_transport = true;
        if (object_dynamic_cast(OBJECT(p->dev), TYPE_VFIO_USER_NVME)) {
            info->transport = PASSTHRU_TRANSPORT_VFIO_USER;
            if (g_str_has_prefix(name, "vfio-user:")) {
                name += strlen("vfio-user:");
            }
        } else {
            info->transport = PASSTHRU_TRANSPORT_VFIO;
        }
        info->backend = g_strdup(name);
    }
    if (passthru_port_busy(p)) {
        info->has_operation = true;
        info->operation = p->op;
        info->has_elapsed_ms = true;
        info->elapsed_ms = passthru_op_elapsed_ms(p);
    }
    return info;
}

static PassthruHotplugMode hotplug_mode(void)
{
    Object *lpc = object_resolve_path_type("", TYPE_ICH9_LPC_DEVICE, NULL);

    if (lpc && object_property_get_bool(lpc,
                   "acpi-pci-hotplug-with-bridge-support", NULL)) {
        return PASSTHRU_HOTPLUG_MODE_ACPI;
    }
    return PASSTHRU_HOTPLUG_MODE_NATIVE;
}

PassthruHotplugInfo *qmp_query_passthru_hotplug(Error **errp)
{
    PassthruHotplugInfo *info = g_new0(PassthruHotplugInfo, 1);
    PassthruPortInfoList **tail = &info->ports;
    PCIEHotplugPassthru *p;

    info->enabled = !QTAILQ_EMPTY(&passthru_ports);
    info->hotplug_mode = hotplug_mode();
    info->max_devices = PASSTHRU_MAX_DEVICES;
    info->max_vcpus = PASSTHRU_MAX_VCPUS;
    QTAILQ_FOREACH(p, &passthru_ports, next) {
        QAPI_LIST_APPEND(tail, port_info(p));
    }
    return info;
}
