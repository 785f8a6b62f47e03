/*
 * pcie-hotplug-passthru: the operation state machine
 *
 * Each port is in one state; query-passthru-hotplug and the
 * PASSTHRU_HOTPLUG events read it from here:
 *
 *   EMPTY    --device_add-->            ADDING    [add started]
 *   ADDING   --guest enables device-->  PRESENT   [add completed]
 *   ADDING   --device_del, add-timeout-ms, host device gone-->
 *                                       surprise removal [add failed]
 *   ADDING   --the guest ejects it-->   EMPTY     [add failed; remove
 *                                                  started, completed]
 *   PRESENT  --device_del (orderly)-->  REMOVING  [remove started]
 *   REMOVING --guest ejects, VM reset-->  EMPTY   [remove completed]
 *   REMOVING --unplug-timeout-ms, or removal=surprise set-->
 *                                       surprise removal [remove failed]
 *   PRESENT  --device_del (removal=surprise), host device gone-->
 *                                       surprise removal
 *   PRESENT  --the guest ejects it-->   EMPTY     [remove started,
 *                                                  completed; guest]
 *   surprise removal: the device is unrealized at once, the guest is
 *   told that it is gone, then EMPTY [surprise-remove started, completed]
 *
 * One operation at a time in the whole VM: while a port is ADDING or
 * REMOVING, other operations are refused.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-events-passthru-hotplug.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "hw/pci/pci_bus.h"
#include "hw/pci/pci_bridge.h"
#include "migration/blocker.h"
#include "passthru-port.h"
#include "trace.h"

PassthruPorts passthru_ports = QTAILQ_HEAD_INITIALIZER(passthru_ports);

const char *passthru_port_id(PCIEHotplugPassthru *p)
{
    return DEVICE(p)->id ?: object_get_canonical_path_component(OBJECT(p));
}

const char *passthru_dev_id(PCIDevice *dev)
{
    return DEVICE(dev)->id ?: object_get_typename(OBJECT(dev));
}

BusState *passthru_port_bus(PCIEHotplugPassthru *p)
{
    return BUS(pci_bridge_get_sec_bus(PCI_BRIDGE(p)));
}

static PCIEHotplugPassthru *port_of(PCIDevice *dev)
{
    PCIDevice *bridge = pci_get_bus(dev)->parent_dev;

    if (!bridge) {
        return NULL;
    }
    return (PCIEHotplugPassthru *)object_dynamic_cast(
        OBJECT(bridge), TYPE_PCIE_HOTPLUG_PASSTHRU);
}

bool passthru_port_busy(PCIEHotplugPassthru *p)
{
    return p->state == PASSTHRU_PORT_STATE_ADDING ||
           p->state == PASSTHRU_PORT_STATE_REMOVING;
}

/* The pending operation of the VM, if any: one at a time */
PCIEHotplugPassthru *passthru_pending_port(void)
{
    PCIEHotplugPassthru *p;

    QTAILQ_FOREACH(p, &passthru_ports, next) {
        if (passthru_port_busy(p)) {
            return p;
        }
    }
    return NULL;
}

bool passthru_check_pending(PassthruCheck *c)
{
    PCIEHotplugPassthru *p = passthru_pending_port();

    if (p && !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_OPERATION_PENDING,
                              "another passthrough hotplug operation is "
                              "pending: %s of '%s' on port '%s'",
                              PassthruHotplugOperation_str(p->op),
                              passthru_dev_id(p->dev),
                              passthru_port_id(p))) {
        return false;
    }
    return true;
}

bool passthru_check_no_pending(Error **errp)
{
    PassthruCheck c = PASSTHRU_CHECK_ERRP(errp);

    return passthru_check_pending(&c);
}

unsigned passthru_port_count(void)
{
    PCIEHotplugPassthru *p;
    unsigned n = 0;

    QTAILQ_FOREACH(p, &passthru_ports, next) {
        n++;
    }
    return n;
}

unsigned passthru_device_count(void)
{
    PCIEHotplugPassthru *p;
    unsigned n = 0;

    QTAILQ_FOREACH(p, &passthru_ports, next) {
        n += !!p->dev;
    }
    return n;
}

bool passthru_check_device_count(PassthruCheck *c)
{
    if (passthru_device_count() >= PASSTHRU_MAX_DEVICES &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_TOO_MANY_DEVICES,
                         "passthrough hotplug allows at most %d passthrough "
                         "NVMe devices, and the VM has them",
                         PASSTHRU_MAX_DEVICES)) {
        return false;
    }
    return true;
}

/*
 * A device sits on the port from now on.  Migration and snapshots would
 * lose the passthrough device's state: block them while it is there.
 */
bool passthru_device_attach(PCIEHotplugPassthru *p, PCIDevice *dev,
                            Error **errp)
{
    error_setg(&p->migration_blocker, "passthrough NVMe '%s' on port '%s' "
               "prevents migration and snapshots: remove it first",
               passthru_dev_id(dev), passthru_port_id(p));
    if (migrate_add_blocker(&p->migration_blocker, errp) < 0) {
        return false;
    }
    p->dev = dev;
    return true;
}

void passthru_device_detach(PCIEHotplugPassthru *p)
{
    migrate_del_blocker(&p->migration_blocker);
    p->dev = NULL;
    passthru_set_state(p, PASSTHRU_PORT_STATE_EMPTY);
}

/*
 * Operations are timed on the VM's clock, which stops while the VM is
 * paused: a guest that cannot run cannot answer a request, so neither
 * the unplug timeout nor the elapsed time that the query and the events
 * report counts the time it was paused.
 */
static int64_t vm_clock_ms(void)
{
    return qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL);
}

uint64_t passthru_op_elapsed_ms(PCIEHotplugPassthru *p)
{
    return vm_clock_ms() - p->op_start_ms;
}

/*
 * Arm the timeout of the pending add or orderly removal, or disarm it.
 * Either counts from the operation's start, so that a changed timeout
 * takes effect at once.
 */
void passthru_op_timer_update(PCIEHotplugPassthru *p)
{
    uint32_t ms = 0;

    if (p->state == PASSTHRU_PORT_STATE_ADDING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_ADD) {
        ms = p->add_timeout_ms;
    } else if (p->state == PASSTHRU_PORT_STATE_REMOVING &&
               p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE) {
        ms = p->unplug_timeout_ms;
    }
    if (ms) {
        timer_mod(p->op_timer, p->op_start_ms + ms);
    } else {
        timer_del(p->op_timer);
    }
}

void passthru_emit(PCIEHotplugPassthru *p, PassthruHotplugPhase phase,
                   const char *reason)
{
    bool started = phase == PASSTHRU_HOTPLUG_PHASE_STARTED;

    trace_passthru_port_event(passthru_port_id(p), passthru_dev_id(p->dev),
                              PassthruHotplugOperation_str(p->op),
                              PassthruHotplugPhase_str(phase),
                              PassthruHotplugCause_str(p->cause));
    qapi_event_send_passthru_hotplug(passthru_port_id(p),
                                     passthru_dev_id(p->dev), p->op,
                                     phase, p->cause, !started,
                                     started ? 0 : passthru_op_elapsed_ms(p),
                                     reason);
}

void passthru_set_state(PCIEHotplugPassthru *p, PassthruPortState state)
{
    trace_passthru_port_state(passthru_port_id(p),
                              PassthruPortState_str(p->state),
                              PassthruPortState_str(state));
    p->state = state;
}

/* Begin operation @op: the port goes to @state, "started" is sent */
void passthru_op_start(PCIEHotplugPassthru *p, PassthruHotplugOperation op,
                       PassthruHotplugCause cause, PassthruPortState state,
                       const char *reason)
{
    p->op = op;
    p->cause = cause;
    p->op_start_ms = vm_clock_ms();
    passthru_set_state(p, state);
    passthru_emit(p, PASSTHRU_HOTPLUG_PHASE_STARTED, reason);
}

/*
 * Take the device away from the guest at once.  The add or orderly
 * removal in progress, if any, fails.  Runs in the main loop with the
 * BQL held.
 */
void passthru_surprise_remove(PCIEHotplugPassthru *p,
                              PassthruHotplugCause cause, const char *reason)
{
    DeviceState *dev = DEVICE(p->dev);

    timer_del(p->op_timer);
    if (passthru_port_busy(p)) {
        g_autofree char *why = p->op == PASSTHRU_HOTPLUG_OPERATION_ADD ?
            g_strdup_printf("surprise removal before the guest enabled the "
                            "device: %s", reason) : g_strdup(reason);

        p->cause = cause;
        passthru_emit(p, PASSTHRU_HOTPLUG_PHASE_FAILED, why);
    }
    passthru_op_start(p, PASSTHRU_HOTPLUG_OPERATION_SURPRISE_REMOVE, cause,
                      PASSTHRU_PORT_STATE_REMOVING, reason);

    p->signal->surprise_begin(p, dev);
    object_ref(OBJECT(dev));
    hotplug_handler_unplug(HOTPLUG_HANDLER(p), dev, &error_abort);
    object_unparent(OBJECT(dev));
    p->signal->surprise_end(p);

    passthru_emit(p, PASSTHRU_HOTPLUG_PHASE_COMPLETED, reason);
    passthru_device_detach(p);
    object_unref(OBJECT(dev));
}

/* The guest did not finish the add or the removal in time */
void passthru_op_timeout(void *opaque)
{
    PCIEHotplugPassthru *p = opaque;
    g_autofree char *reason = NULL;

    if (!p->dev) {
        return;
    }
    if (p->state == PASSTHRU_PORT_STATE_ADDING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_ADD) {
        reason = g_strdup_printf("the guest did not enable the device "
                                 "within %u ms", p->add_timeout_ms);
    } else if (p->state == PASSTHRU_PORT_STATE_REMOVING &&
               p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE) {
        reason = g_strdup_printf("the guest did not complete the removal "
                                 "within %u ms", p->unplug_timeout_ms);
    } else {
        return;
    }
    passthru_surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_TIMEOUT, reason);
}

/* Called when the device changes, or its host device goes away */

void passthru_port_device_config_written(PCIDevice *dev)
{
    PCIEHotplugPassthru *p = port_of(dev);
    uint16_t cmd = pci_get_word(dev->config + PCI_COMMAND);
    uint16_t on = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;

    if (!p || p->dev != dev || p->state != PASSTHRU_PORT_STATE_ADDING) {
        return;
    }
    /* The add is complete once the guest driver has enabled the device */
    if ((cmd & on) == on && (msix_enabled(dev) || msi_enabled(dev))) {
        passthru_emit(p, PASSTHRU_HOTPLUG_PHASE_COMPLETED, NULL);
        passthru_set_state(p, PASSTHRU_PORT_STATE_PRESENT);
        passthru_op_timer_update(p);
    }
}

typedef struct HostGone {
    PCIDevice *dev;
    char *reason;
} HostGone;

static void host_gone_bh(void *opaque)
{
    HostGone *hg = opaque;
    PCIEHotplugPassthru *p;

    if (DEVICE(hg->dev)->realized) {
        p = port_of(hg->dev);
        if (p && p->dev == hg->dev) {
            trace_passthru_host_gone(passthru_dev_id(hg->dev), hg->reason);
            passthru_surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_HOST_GONE,
                                     hg->reason);
        }
    }
    object_unref(OBJECT(hg->dev));
    g_free(hg->reason);
    g_free(hg);
}

void passthru_port_host_gone(PCIDevice *dev, const char *reason)
{
    HostGone *hg = g_new0(HostGone, 1);

    hg->dev = dev;
    hg->reason = g_strdup(reason);
    object_ref(OBJECT(dev));
    aio_bh_schedule_oneshot(qemu_get_aio_context(), host_gone_bh, hg);
}
