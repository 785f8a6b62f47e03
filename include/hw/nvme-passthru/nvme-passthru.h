/*
 * NVMe passthrough hotplug: the pcie-hotplug-passthru root port and the
 * devices that may sit on it: vfio-pci, and the vfio-nvme /
 * vfio-user-nvme frontends
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NVME_PASSTHRU_H
#define HW_NVME_PASSTHRU_H

#include "hw/pci/pci_device.h"
#include "qapi/qapi-types-passthru-hotplug.h"
#include "qom/object.h"

#define TYPE_PCIE_HOTPLUG_PASSTHRU "pcie-hotplug-passthru"
#define TYPE_VFIO_NVME "vfio-nvme"
#define TYPE_VFIO_USER_NVME "vfio-user-nvme"

/* The limits of a VM with passthrough hotplug, as vSphere's */
#define PASSTHRU_MAX_DEVICES 32
#define PASSTHRU_MAX_VCPUS 128

/* The PCI class of an NVMe controller: mass storage, NVM, NVMe */
#define PASSTHRU_NVME_CLASS 0x010802

/*
 * The class of both frontends: they remember the vfio-pci (or
 * vfio-user-pci) hooks they wrap.
 */
typedef struct VFIONvmeClass {
    PCIDeviceClass parent_class;
    void (*parent_realize)(PCIDevice *pdev, Error **errp);
    void (*parent_exit)(PCIDevice *pdev);
} VFIONvmeClass;

/*
 * Frontend side, shared by vfio-nvme and vfio-user-nvme (vfio-nvme.c).
 * The port, not the frontends, checks what the device is
 * (passthru-port-frontend.c): the frontends add only their place.
 *
 * vfio_nvme_realize_common: refuse any place but a pcie-hotplug-passthru
 * port, then run the parent realize.
 *
 * vfio_nvme_class_init_common: remember the parent's hooks, and realize
 * with vfio_nvme_realize_common.
 */
void vfio_nvme_realize_common(PCIDevice *pdev, Error **errp);
void vfio_nvme_class_init_common(ObjectClass *klass, const char *desc);

/* Port side (passthru-port-state.c) */

/*
 * The host device behind @dev vanished: take @dev away from the guest
 * (surprise removal).  Safe from any main-loop context: the removal
 * runs from a bottom half.
 */
void passthru_port_host_gone(PCIDevice *dev, const char *reason);

/* How many pcie-hotplug-passthru ports the VM has */
unsigned passthru_port_count(void);

/*
 * Refusals (passthru-check.c).  Every rule that may refuse a device
 * reports into a PassthruCheck, so that device_add and the admission
 * query run the same code.  device_add's check keeps the first refusal
 * in its Error and stops there; the admission query's collects every
 * refusal and goes on.
 */
typedef struct PassthruCheck {
    Error **errp;                   /* device_add: the first refusal */
    PassthruRefusalList **tail;     /* admission: every refusal */
    bool refused;
} PassthruCheck;

#define PASSTHRU_CHECK_ERRP(e) ((PassthruCheck) { .errp = (e) })

/*
 * Refuse for @code, with a message that says why.  Returns whether the
 * checks go on: false for device_add's check (stop at the first
 * refusal), true for the admission query's.  So a rule reads
 *
 *     if (broken && !passthru_refuse(c, code, "...")) {
 *         return false;
 *     }
 *
 * and a function of rules returns false only when the checks stop.
 */
bool passthru_refuse(PassthruCheck *c, PassthruRefusalCode code,
                     const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* Enforce the VM-wide rules (passthru-policy.c); once is enough */
void passthru_policy_enable(void);

/* Check the running VM against the VM-wide rules (passthru-policy.c) */
bool passthru_policy_check(PassthruCheck *c);

#endif
