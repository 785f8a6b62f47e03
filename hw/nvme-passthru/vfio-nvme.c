/*
 * vfio-nvme: passthrough of a host NVMe controller with kernel VFIO, for
 * hotplug on a pcie-hotplug-passthru port
 *
 * vfio-pci under a name that says what it is for: it may sit only on a
 * pcie-hotplug-passthru port.  The port applies every other rule of
 * passthrough hotplug, the same for vfio-nvme, vfio-user-nvme and the
 * plain vfio-pci of libvirt's <hostdev> (passthru-port-frontend.c).
 *
 * The realize shared with vfio-user-nvme lives here too.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/module.h"
#include "hw/pci/pci_bus.h"
#include "hw/vfio/types.h"
#include "hw/nvme-passthru/nvme-passthru.h"

#define VFIO_NVME_GET_CLASS(obj) \
    OBJECT_GET_CLASS(VFIONvmeClass, (obj), TYPE_PCI_DEVICE)

/*
 * The frontends exist for the port: refuse any other place, then realize
 * as vfio-pci (or vfio-user-pci) does.
 */
void vfio_nvme_realize_common(PCIDevice *pdev, Error **errp)
{
    const char *type = object_get_typename(OBJECT(pdev));
    const char *id = DEVICE(pdev)->id ?: "";
    PCIDevice *bridge = pci_get_bus(pdev)->parent_dev;
    ERRP_GUARD();

    if (!bridge ||
        !object_dynamic_cast(OBJECT(bridge), TYPE_PCIE_HOTPLUG_PASSTHRU)) {
        error_setg(errp, "%s '%s' must be plugged into a "
                   "pcie-hotplug-passthru port", type, id);
        return;
    }
    VFIO_NVME_GET_CLASS(pdev)->parent_realize(pdev, errp);
    if (*errp) {
        error_prepend(errp, "%s '%s': ", type, id);
    }
}

void vfio_nvme_class_init_common(ObjectClass *klass, const char *desc)
{
    PCIDeviceClass *pdc = PCI_DEVICE_CLASS(klass);
    VFIONvmeClass *k = (VFIONvmeClass *)klass;

    DEVICE_CLASS(klass)->desc = desc;
    k->parent_realize = pdc->realize;
    k->parent_exit = pdc->exit;
    pdc->realize = vfio_nvme_realize_common;
}

static void vfio_nvme_class_init(ObjectClass *klass, const void *data)
{
    vfio_nvme_class_init_common(klass,
                                "NVMe controller passthrough (VFIO) for "
                                "hotplug");
}

static const TypeInfo vfio_nvme_info = {
    .name = TYPE_VFIO_NVME,
    .parent = TYPE_VFIO_PCI,
    .class_size = sizeof(VFIONvmeClass),
    .class_init = vfio_nvme_class_init,
};

static void vfio_nvme_register_types(void)
{
    type_register_static(&vfio_nvme_info);
}

type_init(vfio_nvme_register_types)
