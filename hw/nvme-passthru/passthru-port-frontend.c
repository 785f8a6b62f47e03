/*
 * pcie-hotplug-passthru: which devices a port takes, and how it watches
 * them
 *
 * A port takes a VFIO PCI device: plain vfio-pci, which is what
 * libvirt's <hostdev> hands QEMU, or the vfio-nvme and vfio-user-nvme
 * frontends.  Whatever its type, the device must be what passthrough
 * hotplug can keep safe, and these rules are checked here only:
 *
 *   - it has a well-formed id, so that it can be removed by that id;
 *   - no property fakes its identity, and its own class code, read from
 *     the device once it is realized, says NVMe controller (01:08:02);
 *     libvirt may pass the device as fd=, so sysfs is not the authority;
 *   - it sits at address 0.0, the only slot of the port;
 *   - kernel VFIO only: the host may ask for the device back (x-req),
 *     and it is alone in its IOMMU group, so that taking it away touches
 *     nothing else.
 *
 * Once the device is on the port, the port watches it: a guest config
 * write may complete a hot-add, and kernel VFIO's device request and
 * error notifiers become a surprise removal, not a wait for the guest
 * or a VM stop.  (vfio-user-nvme reports its server going away itself.)
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/id.h"
#include "qemu/cutils.h"
#include "qemu/main-loop.h"
#include "hw/vfio/pci.h"
#include "hw/vfio/types.h"
#include "passthru-port.h"
#include "trace.h"

/* Properties of vfio-pci and vfio-user-pci that fake the identity */
static const char *const identity_props[] = {
    "x-pci-vendor-id", "x-pci-device-id", "x-pci-sub-vendor-id",
    "x-pci-sub-device-id", "x-pci-class-code",
};

bool passthru_is_frontend_class(ObjectClass *oc)
{
    return (object_class_dynamic_cast(oc, TYPE_VFIO_PCI) &&
            !object_class_dynamic_cast(oc, TYPE_VFIO_PCI_NOHOTPLUG)) ||
           object_class_dynamic_cast(oc, TYPE_VFIO_USER_NVME);
}

bool passthru_is_frontend(DeviceState *dev)
{
    return passthru_is_frontend_class(object_get_class(OBJECT(dev)));
}

bool passthru_refuse_not_frontend(const char *port, const char *type,
                                  PassthruCheck *c)
{
    if (port) {
        return passthru_refuse(c, PASSTHRU_REFUSAL_CODE_WRONG_DRIVER,
                               "pcie-hotplug-passthru port '%s' accepts "
                               "only vfio-pci, vfio-nvme and vfio-user-nvme "
                               "devices, not '%s'", port, type);
    }
    return passthru_refuse(c, PASSTHRU_REFUSAL_CODE_WRONG_DRIVER,
                           "pcie-hotplug-passthru ports accept only "
                           "vfio-pci, vfio-nvme and vfio-user-nvme devices, "
                           "not '%s'", type);
}

static bool is_kernel_vfio(PCIDevice *pdev)
{
    return object_dynamic_cast(OBJECT(pdev), TYPE_VFIO_PCI);
}

static const char *type_of(PCIDevice *pdev)
{
    return object_get_typename(OBJECT(pdev));
}

static const char *id_of(PCIDevice *pdev)
{
    return DEVICE(pdev)->id ?: "";
}

/* A port holds one device, at function 0 of its only slot */
static bool check_address(const char *port, PCIDevice *pdev,
                          PassthruCheck *c)
{
    if (pdev->devfn != 0 &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_WRONG_ADDRESS,
                         "%s '%s' must be at address 0.0 of port '%s', "
                         "not %x.%x: a port holds one device", type_of(pdev),
                         id_of(pdev), port, PCI_SLOT(pdev->devfn),
                         PCI_FUNC(pdev->devfn))) {
        return false;
    }
    return true;
}

static bool check_class(PCIDevice *pdev, uint32_t class, PassthruCheck *c)
{
    if (class != PASSTHRU_NVME_CLASS &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_NOT_NVME,
                         "%s '%s': class code %02x:%02x:%02x is not an NVMe "
                         "controller (01:08:02)", type_of(pdev), id_of(pdev),
                         class >> 16, (class >> 8) & 0xff, class & 0xff)) {
        return false;
    }
    return true;
}

static gint strcmp_ptr(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The kernel VFIO device's host device in sysfs, from sysfsdev= or
 * host=; NULL when neither is given (fd= passing, where sysfs is not
 * ours, or nothing).
 */
static char *host_sysfs_path(VFIOPCIDevice *vdev)
{
    VFIODevice *vbasedev = &vdev->vbasedev;

    if (vbasedev->sysfsdev) {
        return g_strdup(vbasedev->sysfsdev);
    }
    if (vbasedev->fd < 0 &&
        (~vdev->host.domain || ~vdev->host.bus ||
         ~vdev->host.slot || ~vdev->host.function)) {
        return g_strdup_printf("/sys/bus/pci/devices/%04x:%02x:%02x.%01x",
                               vdev->host.domain, vdev->host.bus,
                               vdev->host.slot, vdev->host.function);
    }
    return NULL;
}

/*
 * The host device must be alone in its IOMMU group.  Read through sysfs
 * before the device is realized, which would open the group.  A path
 * that cannot be read (no such device, or fd= passing where sysfs is not
 * ours) is left to the realize, which reports it as it always has.
 */
static bool check_group(PCIDevice *pdev, PassthruCheck *c)
{
    g_autofree char *path = host_sysfs_path(VFIO_PCI_DEVICE(pdev));
    g_autofree char *name = NULL;
    g_autofree char *link = NULL;
    g_autofree char *group = NULL;
    g_autofree char *group_nr = NULL;
    g_autofree char *devices = NULL;
    g_autofree char *list = NULL;
    g_autoptr(GPtrArray) others = NULL;
    g_autoptr(GDir) dir = NULL;
    const char *entry;

    if (!path) {
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
    g_ptr_array_sort(others, strcmp_ptr);
    g_ptr_array_add(others, NULL);
    list = g_strjoinv(", ", (char **)others->pdata);
    return passthru_refuse(c, PASSTHRU_REFUSAL_CODE_IOMMU_GROUP_NOT_VIABLE,
                           "%s '%s': IOMMU group %s of %s also holds %s: "
                           "pass through a device that is alone in its "
                           "group", type_of(pdev), id_of(pdev), group_nr,
                           name, list);
}

/*
 * What can be checked before the device is realized, that is, before
 * the host device is opened.  @dev is known to be a frontend; @port
 * names the port it is for.
 */
bool passthru_frontend_check(const char *port, DeviceState *dev,
                             PassthruCheck *c)
{
    PCIDevice *pdev = PCI_DEVICE(dev);
    size_t i;

    /* An address given by the user; the bus picks one (0.0) otherwise */
    if (pdev->devfn != -1 && !check_address(port, pdev, c)) {
        return false;
    }

    /* A management stack must be able to remove what it added, by id */
    if (dev->id && !id_wellformed(dev->id) &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_BAD_ID,
                         "%s: id '%s' is not well formed: it must begin "
                         "with a letter and contain only letters, digits, "
                         "'-', '.' and '_'", type_of(pdev), dev->id)) {
        return false;
    }
    for (i = 0; i < ARRAY_SIZE(identity_props); i++) {
        uint64_t v = object_property_get_uint(OBJECT(dev), identity_props[i],
                                              &error_abort);
        if ((uint32_t)v != (uint32_t)PCI_ANY_ID &&
            !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_IDENTITY_OVERRIDE,
                             "%s '%s': property '%s' is not allowed: a "
                             "passthrough NVMe device keeps its own identity",
                             type_of(pdev), id_of(pdev),
                             identity_props[i])) {
            return false;
        }
    }
    if (!is_kernel_vfio(pdev)) {
        return true;
    }
    /*
     * Without the device request notifier the host's removal or unbind
     * of the device blocks in the kernel until the guest lets go, and
     * no surprise removal happens.
     */
    if (!(VFIO_PCI_DEVICE(pdev)->features & VFIO_FEATURE_ENABLE_REQ) &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_X_REQ_OFF,
                         "%s '%s': property 'x-req' is not allowed off: "
                         "the host taking the device back must remove it "
                         "from the guest", type_of(pdev), id_of(pdev))) {
        return false;
    }
    return check_group(pdev, c);
}

/*
 * What the realize of a kernel VFIO device would find, read from sysfs
 * beforehand: for the admission query only.  device_add opens the host
 * device instead, and says what vfio-pci says (no such device, group
 * not viable) or, once realized, what its config space says
 * (passthru_frontend_check_realized()).  Nothing to read for fd=.
 */
bool passthru_frontend_check_host(DeviceState *dev, PassthruCheck *c)
{
    PCIDevice *pdev = PCI_DEVICE(dev);
    g_autofree char *path = NULL;
    g_autofree char *class_file = NULL;
    g_autofree char *class_str = NULL;
    g_autofree char *driver_link = NULL;
    g_autofree char *driver = NULL;
    g_autofree char *driver_name = NULL;
    uint64_t class;

    if (!is_kernel_vfio(pdev)) {
        return true;
    }
    path = host_sysfs_path(VFIO_PCI_DEVICE(pdev));
    if (!path) {
        return passthru_refuse(c, PASSTHRU_REFUSAL_CODE_HOST_DEVICE_MISSING,
                               "%s '%s': no host device: give host= or "
                               "sysfsdev=", type_of(pdev), id_of(pdev));
    }
    if (!g_file_test(path, G_FILE_TEST_IS_DIR)) {
        return passthru_refuse(c, PASSTHRU_REFUSAL_CODE_HOST_DEVICE_MISSING,
                               "%s '%s': no such host device: %s",
                               type_of(pdev), id_of(pdev), path);
    }
    class_file = g_strdup_printf("%s/class", path);
    if (g_file_get_contents(class_file, &class_str, NULL, NULL) &&
        !qemu_strtou64(g_strstrip(class_str), NULL, 16, &class) &&
        !check_class(pdev, class, c)) {
        return false;
    }
    driver_link = g_strdup_printf("%s/driver", path);
    driver = g_file_read_link(driver_link, NULL);
    if (driver) {
        driver_name = g_path_get_basename(driver);
    }
    if (g_strcmp0(driver_name, "vfio-pci") &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_HOST_DEVICE_IN_USE,
                         "%s '%s': host device %s is %s%s%s, not vfio-pci: "
                         "bind it to vfio-pci first", type_of(pdev),
                         id_of(pdev), path,
                         driver_name ? "in use by the host (driver " :
                         "bound to no driver",
                         driver_name ?: "", driver_name ? ")" : "")) {
        return false;
    }
    return true;
}

/* What only the realized device can tell: its address, its class */
bool passthru_frontend_check_realized(const char *port, PCIDevice *pdev,
                                      PassthruCheck *c)
{
    uint32_t class = pci_get_long(pdev->config + PCI_CLASS_REVISION) >> 8;

    return check_address(port, pdev, c) && check_class(pdev, class, c);
}

/* Watching the device on the port */

/* vfio-pci's own config_write (every frontend has it), then the port */
static void frontend_config_write(PCIDevice *pdev, uint32_t addr,
                                  uint32_t val, int len)
{
    PCI_DEVICE_GET_CLASS(pdev)->config_write(pdev, addr, val, len);
    passthru_port_device_config_written(pdev);
}

static void frontend_req_notifier(void *opaque)
{
    VFIOPCIDevice *vdev = opaque;

    if (event_notifier_test_and_clear(&vdev->req_notifier)) {
        passthru_port_host_gone(PCI_DEVICE(vdev),
                                "the host asked for the device back");
    }
}

static void frontend_err_notifier(void *opaque)
{
    VFIOPCIDevice *vdev = opaque;

    if (event_notifier_test_and_clear(&vdev->err_notifier)) {
        passthru_port_host_gone(PCI_DEVICE(vdev),
                                "the host reported an unrecoverable error");
    }
}

/*
 * From now on the port sees the guest's config writes, and kernel VFIO's
 * notifiers call the port instead of vfio-pci's handlers, which would
 * wait for the guest (request) or stop the VM (error).  Config writes go
 * through the instance's hook (pci_host_config_write_common()), and
 * qemu_set_fd_handler() on the same fd replaces vfio-pci's handler;
 * vfio_exitfn() removes ours with it.
 */
void passthru_frontend_adopt(PCIDevice *pdev)
{
    VFIOPCIDevice *vdev;

    pdev->config_write = frontend_config_write;
    if (!is_kernel_vfio(pdev)) {
        return;
    }
    vdev = VFIO_PCI_DEVICE(pdev);
    if (vdev->req_enabled) {
        qemu_set_fd_handler(event_notifier_get_fd(&vdev->req_notifier),
                            frontend_req_notifier, NULL, vdev);
    }
    if (vdev->pci_aer) {
        qemu_set_fd_handler(event_notifier_get_fd(&vdev->err_notifier),
                            frontend_err_notifier, NULL, vdev);
    }
}
