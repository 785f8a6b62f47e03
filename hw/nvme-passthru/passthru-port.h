/*
 * pcie-hotplug-passthru: what the port's files share
 *
 *   pcie-hotplug-passthru.c  the device: its rules for when a device
 *                            may be plugged, properties, lifecycle
 *   passthru-port-frontend.c what a device on the port must be, and
 *                            how the port watches it
 *   passthru-port-state.c    the operation state machine, the events,
 *                            surprise removal, the frontends' entry points
 *   passthru-port-signal.c   how the guest is told: ACPI PCI hotplug or
 *                            the slot's native PCIe hotplug
 *   passthru-port-qmp.c      query-passthru-hotplug
 *   passthru-port-hmp.c      info passthru-hotplug
 *   passthru-admission.c     query-passthru-hotplug-admission
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NVME_PASSTHRU_PASSTHRU_PORT_H
#define HW_NVME_PASSTHRU_PASSTHRU_PORT_H

#include "qapi/qapi-types-passthru-hotplug.h"
#include "qemu/notify.h"
#include "qemu/queue.h"
#include "qemu/timer.h"
#include "hw/hotplug.h"
#include "hw/resettable.h"
#include "hw/pci-bridge/gen_pcie_root_port.h"
#include "hw/nvme-passthru/nvme-passthru.h"

OBJECT_DECLARE_TYPE(PCIEHotplugPassthru, PCIEHotplugPassthruClass,
                    PCIE_HOTPLUG_PASSTHRU)

typedef struct PassthruSignalOps PassthruSignalOps;

struct PCIEHotplugPassthru {
    GenPCIERootPort parent_obj;

    /* Properties, settable at run time */
    PassthruRemoval removal;
    uint32_t add_timeout_ms;
    uint32_t unplug_timeout_ms;

    /* The operation state */
    PassthruPortState state;
    PassthruHotplugOperation op;
    PassthruHotplugCause cause;
    int64_t op_start_ms;            /* QEMU_CLOCK_VIRTUAL */
    PCIDevice *dev;                 /* the frontend on the port, if any */

    /* Set while a device is on the port: no migration, no snapshots */
    Error *migration_blocker;

    /* How the guest is told; chosen once the machine is built */
    const PassthruSignalOps *signal;
    HotplugHandler *acpi_hp;        /* ICH9-LPC, with ACPI PCI hotplug */

    QEMUTimer *op_timer;            /* add or orderly removal -> surprise */
    Notifier machine_done;
    QTAILQ_ENTRY(PCIEHotplugPassthru) next;
};

struct PCIEHotplugPassthruClass {
    PCIERootPortClass parent_class;
    DeviceRealize parent_realize;
    DeviceUnrealize parent_unrealize;
    ResettablePhases parent_phases;
    /* the root port's slot: native PCIe hotplug signalling */
    hotplug_fn parent_pre_plug;
    hotplug_fn parent_plug;
    hotplug_fn parent_unplug_request;
    hotplug_fn parent_unplug;
};

/*
 * Signalling (passthru-port-signal.c): each step of an operation as the
 * guest learns of it.  The port's policy decides first, then hands the
 * step to these.
 */
struct PassthruSignalOps {
    const char *name;
    void (*pre_plug)(PCIEHotplugPassthru *p, DeviceState *dev, Error **errp);
    void (*plug)(PCIEHotplugPassthru *p, DeviceState *dev, Error **errp);
    void (*unplug_request)(PCIEHotplugPassthru *p, DeviceState *dev,
                           Error **errp);
    /* Must not fail: the guest's eject cannot be refused */
    void (*unplug)(PCIEHotplugPassthru *p, DeviceState *dev);
    bool (*is_hotpluggable_bus)(PCIEHotplugPassthru *p, BusState *bus);
    /* Surprise removal: before the device goes, and once it is gone */
    void (*surprise_begin)(PCIEHotplugPassthru *p, DeviceState *dev);
    void (*surprise_end)(PCIEHotplugPassthru *p);
    /* Has the guest not yet finished with the slot's previous device? */
    bool (*ack_pending)(PCIEHotplugPassthru *p);
    /* The port is being reset: the removal waiting for the guest ends */
    void (*reset_removal)(PCIEHotplugPassthru *p);
};

extern const PassthruSignalOps passthru_signal_acpi;
extern const PassthruSignalOps passthru_signal_native;

/* Naming (passthru-port-state.c) */
const char *passthru_port_id(PCIEHotplugPassthru *p);
const char *passthru_dev_id(PCIDevice *dev);
BusState *passthru_port_bus(PCIEHotplugPassthru *p);

/*
 * The devices a port takes (passthru-port-frontend.c).  The checks run
 * in this order: passthru_is_frontend(), passthru_frontend_check()
 * before the device is realized where the port's pre_plug sees it, and
 * passthru_frontend_check_realized() before the guest is told of it.
 * passthru_frontend_adopt() then makes the port watch the device.  The
 * checks report into a PassthruCheck, and return false when the checks
 * stop (passthru_refuse()); @port names the port the device is for.
 */
bool passthru_is_frontend_class(ObjectClass *oc);
bool passthru_is_frontend(DeviceState *dev);
bool passthru_refuse_not_frontend(const char *port, const char *type,
                                  PassthruCheck *c);
bool passthru_frontend_check(const char *port, DeviceState *dev,
                             PassthruCheck *c);
bool passthru_frontend_check_host(DeviceState *dev, PassthruCheck *c);
bool passthru_frontend_check_realized(const char *port, PCIDevice *pdev,
                                      PassthruCheck *c);
void passthru_frontend_adopt(PCIDevice *pdev);

/*
 * May @dev, a frontend or NULL (the admission query, for a driver that
 * is none), be plugged into @p now (pcie-hotplug-passthru.c)?  @p is
 * NULL when the admission query found no port named @port: what does
 * not depend on the port is still checked.
 */
bool passthru_port_check_plug(PCIEHotplugPassthru *p, const char *port,
                              DeviceState *dev, bool hotplugged,
                              PassthruCheck *c);

/*
 * The state machine (passthru-port-state.c).  Every port, in creation
 * order, is on passthru_ports; at most one has an operation pending.
 */
typedef QTAILQ_HEAD(, PCIEHotplugPassthru) PassthruPorts;
extern PassthruPorts passthru_ports;

bool passthru_port_busy(PCIEHotplugPassthru *p);
PCIEHotplugPassthru *passthru_pending_port(void);
bool passthru_check_no_pending(Error **errp);
bool passthru_check_pending(PassthruCheck *c);
unsigned passthru_device_count(void);
bool passthru_check_device_count(PassthruCheck *c);
uint64_t passthru_op_elapsed_ms(PCIEHotplugPassthru *p);

bool passthru_device_attach(PCIEHotplugPassthru *p, PCIDevice *dev,
                            Error **errp);
void passthru_device_detach(PCIEHotplugPassthru *p);
void passthru_set_state(PCIEHotplugPassthru *p, PassthruPortState state);
void passthru_op_start(PCIEHotplugPassthru *p, PassthruHotplugOperation op,
                       PassthruHotplugCause cause, PassthruPortState state,
                       const char *reason);
void passthru_emit(PCIEHotplugPassthru *p, PassthruHotplugPhase phase,
                   const char *reason);
void passthru_op_timer_update(PCIEHotplugPassthru *p);
void passthru_op_timeout(void *opaque);
void passthru_surprise_remove(PCIEHotplugPassthru *p,
                              PassthruHotplugCause cause, const char *reason);

/* The device's config space changed: the guest may have enabled it */
void passthru_port_device_config_written(PCIDevice *dev);

#endif
