/*
 * vfio-nvme: passthrough of a host NVMe controller with kernel VFIO, for
 * hotplug on a pcie-hotplug-passthru port
 *
 * vfio-pci, restricted to what passthrough hotplug can keep safe: the
 * device must really be an NVMe controller (its own class code, no
 * identity overrides), it sits only on a pcie-hotplug-passthru port, and
 * when the host takes the device back (VFIO device request) or reports
 * an error, it is removed from the guest at once (surprise removal)
 * instead of waiting for the guest or stopping the VM.
 *
 * The checks shared with vfio-user-nvme live here too.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/id.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "hw/pci/pci_bus.h"
#include "hw/vfio/pci.h"
#include "hw/vfio/types.h"
#include "hw/nvme-passthru/nvme-passthru.h"
#include "trace.h"

#define VFIO_NVME_GET_CLASS(obj) \
    OBJECT_GET_CLASS(VFIONvmeClass, (obj), TYPE_PCI_DEVICE)

/* Properties of vfio-pci and vfio-user-pci that fake the identity */
static const char *const identity_props[] = {
    "x-pci-vendor-id", "x-pci-device-id", "x-pci-sub-vendor-id",
    "x-pci-sub-device-id", "x-pci-class-code",
};

static const char *dev_id(PCIDevice *pdev)
{
    return DEVICE(pdev)->id ?: "";
}

/*
 * Before the parent realize: its name, where the device sits, and what
 * it claims to be.  The bus has given it its address by now.
 */
static bool vfio_nvme_precheck(PCIDevice *pdev, Error **errp)
{
    const char *type = object_get_typename(OBJECT(pdev));
    const char *id = DEVICE(pdev)->id;
    PCIDevice *bridge = pci_get_bus(pdev)->parent_dev;
    size_t i;

    /* A management stack must be able to remove what it added, by id */
    if (id && !id_wellformed(id)) {
        error_setg(errp, "%s: id '%s' is not well formed: it must begin "
                   "with a letter and contain only letters, digits, '-', "
                   "'.' and '_'", type, id);
        return false;
    }
    if (!bridge ||
        !object_dynamic_cast(OBJECT(bridge), TYPE_PCIE_HOTPLUG_PASSTHRU)) {
        error_setg(errp, "%s '%s' must be plugged into a "
                   "pcie-hotplug-passthru port", type, dev_id(pdev));
        return false;
    }
    /* A port holds one device, at function 0 of its only slot */
    if (pdev->devfn != 0) {
        error_setg(errp, "%s '%s' must be at address 0.0 of port '%s', "
                   "not %x.%x: a port holds one device", type,
                   dev_id(pdev), DEVICE(bridge)->id ?: "",
                   PCI_SLOT(pdev->devfn), PCI_FUNC(pdev->devfn));
        return false;
    }
    for (i = 0; i < ARRAY_SIZE(identity_props); i++) {
        uint64_t v = object_property_get_uint(OBJECT(pdev), identity_props[i],
                                              &error_abort);
        if ((uint32_t)v != (uint32_t)PCI_ANY_ID) {
            error_setg(errp, "%s '%s': property '%s' is not allowed: a "
                       "passthrough NVMe device keeps its own identity",
                       type, dev_id(pdev), identity_props[i]);
            return false;
        }
    }
    return true;
}

/* After the parent realize: the device's own class code, read from it */
static bool vfio_nvme_check_class(PCIDevice *pdev, Error **errp)
{
    uint32_t class = pci_get_long(pdev->config + PCI_CLASS_REVISION) >> 8;

    if (class != PASSTHRU_NVME_CLASS) {
        error_setg(errp, "%s '%s': class code %02x:%02x:%02x is not an NVMe "
                   "controller (01:08:02)", object_get_typename(OBJECT(pdev)),
                   dev_id(pdev), class >> 16, (class >> 8) & 0xff,
                   class & 0xff);
        trace_vfio_nvme_refused(dev_id(pdev), "not an NVMe controller");
        return false;
    }
    return true;
}

static gint vfio_nvme_strcmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * A hotplug unit must be alone in its IOMMU group: removing it, or the
 * host taking it back, must not touch another device.  Read through
 * sysfs before the parent realize opens anything.  A path that cannot
 * be read (no such device, or fd= passing where sysfs is not ours) is
 * left to the parent realize, which reports it as it always has.
 */
static bool vfio_nvme_check_group(PCIDevice *pdev, Error **errp)
{
    VFIOPCIDevice *vdev = VFIO_PCI_DEVICE(pdev);
    VFIODevice *vbasedev = &vdev->vbasedev;
    g_autofree char *path = NULL;
    g_autofree char *name = NULL;
    g_autofree char *link = NULL;
    g_autofree char *group = NULL;
    g_autofree char *group_nr = NULL;
    g_autofree char *devices = NULL;
    g_autofree char *list = NULL;
    g_autoptr(GPtrArray) others = NULL;
    g_autoptr(GDir) dir = NULL;
    const char *entry;

    if (vbasedev->sysfsdev) {
        path = g_strdup(vbasedev->sysfsdev);
    } else if (vbasedev->fd < 0 &&
               (~vdev->host.domain || ~vdev->host.bus ||
                ~vdev->host.slot || ~vdev->host.function)) {
        path = g_strdup_printf("/sys/bus/pci/devices/%04x:%02x:%02x.%01x",
                               vdev->host.domain, vdev->host.bus,
                               vdev->host.slot, vdev->host.function);
    } else {
        return true;
    }
    name = g_path_get_basename(path);
    link = g_strdup_printf("%s/iommu_group", path);
    group = g_file_read_link(link, NULL);
    devices = g_strdup_printf("%s/iommu_group/devices", path);
    dir = g_dir_open(devices, 0, NULL);
    if (!group || !dir) {
        return true;
    }

    others = g_ptr_array_new_with_free_func(g_free);
    while ((entry = g_dir_read_name(dir))) {
        if (strcmp(entry, name)) {
            g_ptr_array_add(others, g_strdup(entry));
        }
    }
    if (!others->len) {
        return true;
    }
    group_nr = g_path_get_basename(group);
    g_ptr_array_sort(others, vfio_nvme_strcmp);
    g_ptr_array_add(others, NULL);
    list = g_strjoinv(", ", (char **)others->pdata);
    error_setg(errp, "vfio-nvme '%s': IOMMU group %s of %s also holds %s: "
               "pass through a device that is alone in its group",
               dev_id(pdev), group_nr, name, list);
    trace_vfio_nvme_refused(dev_id(pdev), "not alone in its IOMMU group");
    return false;
}

static void vfio_nvme_config_write(PCIDevice *pdev, uint32_t addr,
                                   uint32_t val, int len)
{
    VFIO_NVME_GET_CLASS(pdev)->parent_config_write(pdev, addr, val, len);
    passthru_port_device_config_written(pdev);
}

static void vfio_nvme_req_notifier(void *opaque)
{
    VFIOPCIDevice *vdev = opaque;

    if (event_notifier_test_and_clear(&vdev->req_notifier)) {
        passthru_port_host_gone(PCI_DEVICE(vdev),
                                "the host asked for the device back");
    }
}

static void vfio_nvme_err_notifier(void *opaque)
{
    VFIOPCIDevice *vdev = opaque;

    if (event_notifier_test_and_clear(&vdev->err_notifier)) {
        passthru_port_host_gone(PCI_DEVICE(vdev),
                                "the host reported an unrecoverable error");
    }
}

bool vfio_nvme_realize_common(PCIDevice *pdev, Error **errp)
{
    VFIONvmeClass *k = VFIO_NVME_GET_CLASS(pdev);
    ERRP_GUARD();

    if (!vfio_nvme_precheck(pdev, errp)) {
        return false;
    }
    if (k->host_check && !k->host_check(pdev, errp)) {
        return false;
    }
    k->parent_realize(pdev, errp);
    if (*errp) {
        error_prepend(errp, "%s '%s': ", object_get_typename(OBJECT(pdev)),
                      dev_id(pdev));
        return false;
    }
    if (!vfio_nvme_check_class(pdev, errp)) {
        k->parent_exit(pdev);
        return false;
    }
    return true;
}

void vfio_nvme_class_init_common(ObjectClass *klass, const char *desc)
{
    PCIDeviceClass *pdc = PCI_DEVICE_CLASS(klass);
    VFIONvmeClass *k = (VFIONvmeClass *)klass;

    DEVICE_CLASS(klass)->desc = desc;
    k->parent_realize = pdc->realize;
    k->parent_exit = pdc->exit;
    k->parent_config_write = pdc->config_write;
    pdc->config_write = vfio_nvme_config_write;
}

static void vfio_nvme_realize(PCIDevice *pdev, Error **errp)
{
    VFIOPCIDevice *vdev = VFIO_PCI_DEVICE(pdev);

    /*
     * Without the device request notifier the host's removal or unbind
     * of the device blocks in the kernel until the guest lets go, and
     * no surprise removal happens: the one thing vfio-nvme is for.
     */
    if (!(vdev->features & VFIO_FEATURE_ENABLE_REQ)) {
        error_setg(errp, "vfio-nvme '%s': property 'x-req' is not allowed "
                   "off: the host taking the device back must remove it "
                   "from the guest", dev_id(pdev));
        return;
    }
    if (!vfio_nvme_realize_common(pdev, errp)) {
        return;
    }
    /* The host device going away is a surprise removal, not a VM stop */
    if (vdev->req_enabled) {
        qemu_set_fd_handler(event_notifier_get_fd(&vdev->req_notifier),
                            vfio_nvme_req_notifier, NULL, vdev);
    }
    if (vdev->pci_aer) {
        qemu_set_fd_handler(event_notifier_get_fd(&vdev->err_notifier),
                            vfio_nvme_err_notifier, NULL, vdev);
    }
}

static void vfio_nvme_class_init(ObjectClass *klass, const void *data)
{
    vfio_nvme_class_init_common(klass,
                                "NVMe controller passthrough (VFIO) for "
                                "hotplug");
    PCI_DEVICE_CLASS(klass)->realize = vfio_nvme_realize;
    ((VFIONvmeClass *)klass)->host_check = vfio_nvme_check_group;
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
