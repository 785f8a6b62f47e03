/*
 * vfio-user-nvme: passthrough of an out-of-process NVMe controller with
 * vfio-user, for hotplug on a pcie-hotplug-passthru port
 *
 * The vfio-user twin of vfio-nvme: vfio-user-pci that may sit only on a
 * pcie-hotplug-passthru port, which applies the rules of passthrough
 * hotplug to it (passthru-port-frontend.c).  What only vfio-user has is
 * here: when the server goes away (it exits or closes its socket, or
 * stops answering: no reply in x-msg-timeout) the device is removed from
 * the guest at once (surprise removal).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/lockable.h"
#include "qemu/module.h"
#include "hw/vfio/pci.h"
#include "hw/vfio-user/proxy.h"
#include "hw/nvme-passthru/nvme-passthru.h"

#define TYPE_VFIO_USER_PCI "vfio-user-pci"

#define VFIO_USER_NVME_GET_CLASS(obj) \
    OBJECT_GET_CLASS(VFIONvmeClass, (obj), TYPE_PCI_DEVICE)

static void vfio_user_nvme_server_gone(void *opaque)
{
    PCIDevice *pdev = opaque;
    VFIOUserProxy *proxy = VFIO_PCI_DEVICE(pdev)->vbasedev.proxy;
    g_autofree char *reason = NULL;

    if (!DEVICE(pdev)->realized) {
        return;
    }
    WITH_QEMU_LOCK_GUARD(&proxy->lock) {
        reason = proxy->timed_out ?
            g_strdup_printf("vfio-user server did not answer in %u ms",
                            proxy->wait_time) :
            g_strdup("vfio-user server closed the connection");
    }
    passthru_port_host_gone(pdev, reason);
}

static void vfio_user_nvme_realize(PCIDevice *pdev, Error **errp)
{
    VFIOPCIDevice *vdev = VFIO_PCI_DEVICE(pdev);
    ERRP_GUARD();

    vfio_nvme_realize_common(pdev, errp);
    if (*errp) {
        return;
    }
    vfio_user_set_closed_handler(vdev->vbasedev.proxy,
                                 vfio_user_nvme_server_gone, pdev);
}

static void vfio_user_nvme_exit(PCIDevice *pdev)
{
    VFIOPCIDevice *vdev = VFIO_PCI_DEVICE(pdev);

    vfio_user_set_closed_handler(vdev->vbasedev.proxy, NULL, NULL);
    VFIO_USER_NVME_GET_CLASS(pdev)->parent_exit(pdev);
}

static void vfio_user_nvme_class_init(ObjectClass *klass, const void *data)
{
    PCIDeviceClass *pdc = PCI_DEVICE_CLASS(klass);

    vfio_nvme_class_init_common(klass,
                                "NVMe controller passthrough (vfio-user) "
                                "for hotplug");
    pdc->realize = vfio_user_nvme_realize;
    pdc->exit = vfio_user_nvme_exit;
}

static const TypeInfo vfio_user_nvme_info = {
    .name = TYPE_VFIO_USER_NVME,
    .parent = TYPE_VFIO_USER_PCI,
    .class_size = sizeof(VFIONvmeClass),
    .class_init = vfio_user_nvme_class_init,
};

static void vfio_user_nvme_register_types(void)
{
    type_register_static(&vfio_user_nvme_info);
}

type_init(vfio_user_nvme_register_types)
