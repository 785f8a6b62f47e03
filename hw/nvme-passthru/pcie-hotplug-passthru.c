/*
 * pcie-hotplug-passthru: a PCIe root port for hotplug of passthrough NVMe
 *
 * A "pcie-root-port" that accepts only the vfio-nvme and vfio-user-nvme
 * frontends, runs one hotplug operation at a time in the whole VM, can
 * take a device away from the guest at once (surprise removal), and
 * reports every operation with the PASSTHRU_HOTPLUG event and
 * query-passthru-hotplug.
 *
 * Policy and signalling are apart: the port's own hotplug callbacks
 * decide what may happen, then hand the signalling to whoever tells the
 * guest.  With ACPI PCI hotplug (q35's default) that is ICH9-LPC, which
 * takes every cold-plugged root port's bus at realize; the port takes
 * its bus back once the machine is built and delegates to ICH9-LPC.
 * With native PCIe hotplug it is the root port's own slot (the parent
 * class).
 *
 * Operation states (one per port; the query and the events read them):
 *
 *   EMPTY    --device_add-->            ADDING    [add started]
 *   ADDING   --guest enables device-->  PRESENT   [add completed]
 *   ADDING   --device_del (removal=surprise), host device gone-->
 *                                       surprise removal [add failed]
 *   PRESENT  --device_del (orderly)-->  REMOVING  [remove started]
 *   REMOVING --guest ejects-->          EMPTY     [remove completed]
 *   REMOVING --unplug-timeout-ms, or removal=surprise set-->
 *                                       surprise removal [remove failed]
 *   ADDING, PRESENT --device_del (removal=surprise), host device gone-->
 *                                       surprise removal
 *   surprise removal: the device is unrealized at once, the guest is
 *   told that it is gone, then EMPTY [surprise-remove started, completed]
 *   ADDING, PRESENT --the guest ejects it by itself--> EMPTY
 *                                       [remove started, completed; guest]
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-passthru-hotplug.h"
#include "qapi/qapi-events-passthru-hotplug.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qemu/queue.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "hw/acpi/pcihp.h"
#include "hw/hotplug.h"
#include "hw/resettable.h"
#include "hw/pci/msi.h"
#include "hw/pci/msix.h"
#include "hw/pci/pci_bus.h"
#include "hw/pci/pcie.h"
#include "hw/pci-bridge/gen_pcie_root_port.h"
#include "hw/southbridge/ich9.h"
#include "hw/vfio/pci.h"
#include "migration/blocker.h"
#include "hw/nvme-passthru/nvme-passthru.h"
#include "system/system.h"
#include "trace.h"

OBJECT_DECLARE_TYPE(PCIEHotplugPassthru, PCIEHotplugPassthruClass,
                    PCIE_HOTPLUG_PASSTHRU)

struct PCIEHotplugPassthru {
    GenPCIERootPort parent_obj;

    /* Properties, settable at run time */
    PassthruRemoval removal;
    uint32_t unplug_timeout_ms;

    /* The operation state */
    PassthruPortState state;
    PassthruHotplugOperation op;
    PassthruHotplugCause cause;
    int64_t op_start_ms;            /* QEMU_CLOCK_VIRTUAL */
    PCIDevice *dev;                 /* the frontend on the port, if any */

    /* Set while a device is on the port: no migration, no snapshots */
    Error *migration_blocker;

    /* ICH9-LPC when ACPI PCI hotplug signals the guest, else NULL */
    HotplugHandler *acpi_hp;
    QEMUTimer *unplug_timer;        /* orderly removal -> surprise */
    Notifier machine_done;
    QTAILQ_ENTRY(PCIEHotplugPassthru) next;
};

struct PCIEHotplugPassthruClass {
    PCIERootPortClass parent_class;
    DeviceRealize parent_realize;
    DeviceUnrealize parent_unrealize;
    /* the root port's slot: native PCIe hotplug signalling */
    hotplug_fn parent_pre_plug;
    hotplug_fn parent_plug;
    hotplug_fn parent_unplug_request;
    hotplug_fn parent_unplug;
    ResettablePhases parent_phases;
};

/* Every port, in the order they were created */
static QTAILQ_HEAD(, PCIEHotplugPassthru) passthru_ports =
    QTAILQ_HEAD_INITIALIZER(passthru_ports);

static const char *port_id(PCIEHotplugPassthru *p)
{
    return DEVICE(p)->id ?: object_get_canonical_path_component(OBJECT(p));
}

static const char *dev_id(PCIDevice *dev)
{
    return DEVICE(dev)->id ?: object_get_typename(OBJECT(dev));
}

static bool is_frontend(DeviceState *dev)
{
    return object_dynamic_cast(OBJECT(dev), TYPE_VFIO_NVME) ||
           object_dynamic_cast(OBJECT(dev), TYPE_VFIO_USER_NVME);
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

static BusState *port_bus(PCIEHotplugPassthru *p)
{
    return BUS(pci_bridge_get_sec_bus(PCI_BRIDGE(p)));
}

static bool port_busy(PCIEHotplugPassthru *p)
{
    return p->state == PASSTHRU_PORT_STATE_ADDING ||
           p->state == PASSTHRU_PORT_STATE_REMOVING;
}

/* The pending operation of the VM, if any: one at a time */
static PCIEHotplugPassthru *pending_port(void)
{
    PCIEHotplugPassthru *p;

    QTAILQ_FOREACH(p, &passthru_ports, next) {
        if (port_busy(p)) {
            return p;
        }
    }
    return NULL;
}

static void set_state(PCIEHotplugPassthru *p, PassthruPortState state);

unsigned passthru_port_count(void)
{
    PCIEHotplugPassthru *p;
    unsigned n = 0;

    QTAILQ_FOREACH(p, &passthru_ports, next) {
        n++;
    }
    return n;
}

static unsigned device_count(void)
{
    PCIEHotplugPassthru *p;
    unsigned n = 0;

    QTAILQ_FOREACH(p, &passthru_ports, next) {
        n += !!p->dev;
    }
    return n;
}

/*
 * A device sits on the port from now on.  Migration and snapshots would
 * lose the passthrough device's state: block them while it is there.
 */
static bool device_attach(PCIEHotplugPassthru *p, PCIDevice *dev,
                          Error **errp)
{
    error_setg(&p->migration_blocker, "passthrough NVMe '%s' on port '%s' "
               "prevents migration and snapshots: remove it first",
               dev_id(dev), port_id(p));
    if (migrate_add_blocker(&p->migration_blocker, errp) < 0) {
        return false;
    }
    p->dev = dev;
    return true;
}

static void device_detach(PCIEHotplugPassthru *p)
{
    migrate_del_blocker(&p->migration_blocker);
    p->dev = NULL;
    set_state(p, PASSTHRU_PORT_STATE_EMPTY);
}

static bool check_no_pending(Error **errp)
{
    PCIEHotplugPassthru *p = pending_port();

    if (p) {
        error_setg(errp, "another passthrough hotplug operation is pending: "
                   "%s of '%s' on port '%s'",
                   PassthruHotplugOperation_str(p->op), dev_id(p->dev),
                   port_id(p));
        return false;
    }
    return true;
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

static uint64_t op_elapsed_ms(PCIEHotplugPassthru *p)
{
    return vm_clock_ms() - p->op_start_ms;
}

/* Arm the unplug timeout of the pending orderly removal, or disarm it */
static void unplug_timer_update(PCIEHotplugPassthru *p)
{
    if (p->unplug_timeout_ms && p->state == PASSTHRU_PORT_STATE_REMOVING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE) {
        timer_mod(p->unplug_timer, p->op_start_ms + p->unplug_timeout_ms);
    } else {
        timer_del(p->unplug_timer);
    }
}

static void emit(PCIEHotplugPassthru *p, PassthruHotplugPhase phase,
                 const char *reason)
{
    bool started = phase == PASSTHRU_HOTPLUG_PHASE_STARTED;

    trace_passthru_port_event(port_id(p), dev_id(p->dev),
                              PassthruHotplugOperation_str(p->op),
                              PassthruHotplugPhase_str(phase),
                              PassthruHotplugCause_str(p->cause));
    qapi_event_send_passthru_hotplug(port_id(p), dev_id(p->dev), p->op,
                                     phase, p->cause, !started,
                                     started ? 0 : op_elapsed_ms(p), reason);
}

static void set_state(PCIEHotplugPassthru *p, PassthruPortState state)
{
    trace_passthru_port_state(port_id(p), PassthruPortState_str(p->state),
                              PassthruPortState_str(state));
    p->state = state;
}

/* Begin operation @op: the port goes to @state, "started" is sent */
static void op_start(PCIEHotplugPassthru *p, PassthruHotplugOperation op,
                     PassthruHotplugCause cause, PassthruPortState state,
                     const char *reason)
{
    p->op = op;
    p->cause = cause;
    p->op_start_ms = vm_clock_ms();
    set_state(p, state);
    emit(p, PASSTHRU_HOTPLUG_PHASE_STARTED, reason);
}

/* ACPI mode: has the guest not yet ejected a slot it was asked to? */
static bool acpi_eject_pending(PCIEHotplugPassthru *p)
{
    ICH9LPCState *lpc;
    uint64_t bsel;
    Error *err = NULL;

    lpc = (ICH9LPCState *)object_dynamic_cast(OBJECT(p->acpi_hp),
                                              TYPE_ICH9_LPC_DEVICE);
    if (!lpc) {
        return false;
    }
    bsel = object_property_get_uint(OBJECT(port_bus(p)), ACPI_PCIHP_PROP_BSEL,
                                    &err);
    if (err || bsel >= ACPI_PCIHP_MAX_HOTPLUG_BUS) {
        error_free(err);
        return false;
    }
    return lpc->pm.acpi_pci_hotplug.acpi_pcihp_pci_status[bsel].down & 1;
}

/*
 * Has the guest not yet finished with the slot's previous device?  With
 * ACPI, until it ejects the slot it was asked to eject; natively, until
 * it turns the empty slot's power and power indicator off, as Linux's
 * pciehp does a second or so after a surprise removal.  A device plugged
 * before then would be taken for the old one and ejected.
 */
static bool guest_ack_pending(PCIEHotplugPassthru *p)
{
    PCIDevice *pdev = PCI_DEVICE(p);
    uint16_t ctl;

    if (p->acpi_hp) {
        return acpi_eject_pending(p);
    }
    ctl = pci_get_word(pdev->config + pdev->exp.exp_cap + PCI_EXP_SLTCTL);
    return (ctl & PCI_EXP_SLTCTL_PCC) != PCI_EXP_SLTCTL_PWR_OFF ||
           (ctl & PCI_EXP_SLTCTL_PIC) != PCI_EXP_SLTCTL_PWR_IND_OFF;
}

/* Signalling: hand each hotplug step to ICH9-LPC or to the slot */

static void signal_pre_plug(PCIEHotplugPassthru *p, DeviceState *dev,
                            Error **errp)
{
    if (p->acpi_hp) {
        hotplug_handler_pre_plug(p->acpi_hp, dev, errp);
    } else {
        PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p)->parent_pre_plug(
            HOTPLUG_HANDLER(p), dev, errp);
    }
}

static void signal_plug(PCIEHotplugPassthru *p, DeviceState *dev,
                        Error **errp)
{
    if (p->acpi_hp) {
        hotplug_handler_plug(p->acpi_hp, dev, errp);
    } else {
        PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p)->parent_plug(
            HOTPLUG_HANDLER(p), dev, errp);
    }
}

static void signal_unplug_request(PCIEHotplugPassthru *p, DeviceState *dev,
                                  Error **errp)
{
    if (p->acpi_hp) {
        hotplug_handler_unplug_request(p->acpi_hp, dev, errp);
    } else {
        PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p)->parent_unplug_request(
            HOTPLUG_HANDLER(p), dev, errp);
    }
}

static void signal_unplug(PCIEHotplugPassthru *p, DeviceState *dev,
                          Error **errp)
{
    if (p->acpi_hp) {
        hotplug_handler_unplug(p->acpi_hp, dev, errp);
    } else {
        PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p)->parent_unplug(
            HOTPLUG_HANDLER(p), dev, errp);
    }
}

/*
 * Native mode: tell the guest that the slot is empty now.  Presence
 * Detect Changed alone raises no interrupt in a Linux guest, which
 * enables Attention Button Pressed instead because the slot has a
 * button: raise both.  Linux then disables the slot as a surprise
 * removal and powers it off, with no 5 s wait.
 */
static void native_signal_gone(PCIEHotplugPassthru *p)
{
    PCIDevice *pdev = PCI_DEVICE(p);
    uint8_t *exp_cap = pdev->config + pdev->exp.exp_cap;

    pci_word_test_and_clear_mask(exp_cap + PCI_EXP_SLTSTA,
                                 PCI_EXP_SLTSTA_PDS);
    pci_word_test_and_clear_mask(exp_cap + PCI_EXP_LNKSTA,
                                 PCI_EXP_LNKSTA_DLLLA);
    pci_word_test_and_set_mask(exp_cap + PCI_EXP_SLTSTA, PCI_EXP_SLTSTA_PDC);
    pcie_cap_slot_push_attention_button(pdev);
}

/*
 * Take the device away from the guest at once.  The orderly removal in
 * progress, if any, fails.  Runs in the main loop with the BQL held.
 */
static void surprise_remove(PCIEHotplugPassthru *p, PassthruHotplugCause cause,
                            const char *reason)
{
    DeviceState *dev = DEVICE(p->dev);
    Error *err = NULL;

    timer_del(p->unplug_timer);
    if (port_busy(p)) {
        /* The add or orderly removal in progress fails */
        g_autofree char *why = p->op == PASSTHRU_HOTPLUG_OPERATION_ADD ?
            g_strdup_printf("surprise removal before the guest enabled the "
                            "device: %s", reason) : g_strdup(reason);

        p->cause = cause;
        emit(p, PASSTHRU_HOTPLUG_PHASE_FAILED, why);
    }
    op_start(p, PASSTHRU_HOTPLUG_OPERATION_SURPRISE_REMOVE, cause,
             PASSTHRU_PORT_STATE_REMOVING, reason);

    if (p->acpi_hp) {
        /*
         * Eject request to the guest; the device is gone by the time it
         * looks, and its _EJ0 then finds an empty slot.
         */
        hotplug_handler_unplug_request(p->acpi_hp, dev, &err);
        if (err) {
            warn_reportf_err(err, "port '%s': cannot tell the guest: ",
                             port_id(p));
        }
    }
    object_ref(OBJECT(dev));
    hotplug_handler_unplug(HOTPLUG_HANDLER(p), dev, &error_abort);
    object_unparent(OBJECT(dev));
    if (!p->acpi_hp) {
        native_signal_gone(p);
    }

    emit(p, PASSTHRU_HOTPLUG_PHASE_COMPLETED, reason);
    device_detach(p);
    object_unref(OBJECT(dev));
}

static void unplug_timeout(void *opaque)
{
    PCIEHotplugPassthru *p = opaque;
    g_autofree char *reason = g_strdup_printf(
        "the guest did not complete the removal within %u ms",
        p->unplug_timeout_ms);

    if (p->state == PASSTHRU_PORT_STATE_REMOVING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE && p->dev) {
        surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_TIMEOUT, reason);
    }
}

/* HotplugHandler: the policy, then the signalling */

static void passthru_pre_plug(HotplugHandler *hotplug_dev, DeviceState *dev,
                              Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);

    if (!is_frontend(dev)) {
        error_setg(errp, "pcie-hotplug-passthru port '%s' accepts only "
                   "vfio-nvme and vfio-user-nvme devices, not '%s'",
                   port_id(p), object_get_typename(OBJECT(dev)));
        return;
    }
    if (device_count() >= PASSTHRU_MAX_DEVICES) {
        error_setg(errp, "passthrough hotplug allows at most %d passthrough "
                   "NVMe devices, and the VM has them", PASSTHRU_MAX_DEVICES);
        return;
    }
    if (p->dev) {
        error_setg(errp, "port '%s' already holds '%s'", port_id(p),
                   dev_id(p->dev));
        return;
    }
    if (dev->hotplugged) {
        if (!check_no_pending(errp)) {
            return;
        }
        if (guest_ack_pending(p)) {
            error_setg(errp, "port '%s': the guest has not yet acknowledged "
                       "the removal of the previous device", port_id(p));
            return;
        }
    }
    signal_pre_plug(p, dev, errp);
}

static void passthru_plug(HotplugHandler *hotplug_dev, DeviceState *dev,
                          Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);
    ERRP_GUARD();

    /*
     * Everything that may refuse the device comes before the guest is
     * told of it: with -only-migratable, the migration blocker does.
     */
    if (!device_attach(p, PCI_DEVICE(dev), errp)) {
        return;
    }
    signal_plug(p, dev, errp);
    if (*errp) {
        device_detach(p);
        return;
    }
    if (dev->hotplugged) {
        op_start(p, PASSTHRU_HOTPLUG_OPERATION_ADD, PASSTHRU_HOTPLUG_CAUSE_QMP,
                 PASSTHRU_PORT_STATE_ADDING, NULL);
        passthru_port_device_config_written(p->dev);
    } else {
        set_state(p, PASSTHRU_PORT_STATE_PRESENT);
    }
}

static void passthru_unplug_request(HotplugHandler *hotplug_dev,
                                    DeviceState *dev, Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);
    ERRP_GUARD();

    if (!p->dev || DEVICE(p->dev) != dev) {
        /* Frontends refuse any other place, so this is a bug */
        error_setg(errp, "port '%s' does not hold '%s'", port_id(p),
                   dev->id ?: object_get_typename(OBJECT(dev)));
        return;
    }
    /*
     * device_del of the device whose orderly removal is pending: ask the
     * guest again, in case it lost the request.
     */
    if (p->state == PASSTHRU_PORT_STATE_REMOVING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE &&
        p->removal == PASSTHRU_REMOVAL_ORDERLY) {
        trace_passthru_port_request_again(port_id(p), dev_id(p->dev));
        signal_unplug_request(p, dev, errp);
        return;
    }
    /*
     * One operation at a time.  Only an add that the guest never
     * completes may be cut short, and only by a surprise removal.
     */
    if ((pending_port() != p || p->removal != PASSTHRU_REMOVAL_SURPRISE ||
         p->state != PASSTHRU_PORT_STATE_ADDING) &&
        !check_no_pending(errp)) {
        error_append_hint(errp, "A removal in progress can be forced, and "
                          "an add the guest does not complete cut short, "
                          "by setting the port's removal property to "
                          "surprise.\n");
        return;
    }
    if (p->removal == PASSTHRU_REMOVAL_SURPRISE) {
        surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_QMP,
                        "device_del on a port with removal=surprise");
        return;
    }
    signal_unplug_request(p, dev, errp);
    if (*errp) {
        return;
    }
    op_start(p, PASSTHRU_HOTPLUG_OPERATION_REMOVE, PASSTHRU_HOTPLUG_CAUSE_QMP,
             PASSTHRU_PORT_STATE_REMOVING, NULL);
    unplug_timer_update(p);
}

/* The device leaves the bus: the guest ejected it, or we took it away */
static void passthru_unplug(HotplugHandler *hotplug_dev, DeviceState *dev,
                            Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);
    bool surprise = p->op == PASSTHRU_HOTPLUG_OPERATION_SURPRISE_REMOVE &&
                    p->state == PASSTHRU_PORT_STATE_REMOVING;
    /* ACPI ejects the slots it asked the guest to eject at a reset */
    const char *reason = resettable_is_in_reset(OBJECT(p)) ?
                         "completed by a reset of the VM" : NULL;

    if (!surprise && p->dev == PCI_DEVICE(dev)) {
        timer_del(p->unplug_timer);
        if (p->state == PASSTHRU_PORT_STATE_ADDING) {
            /* The add in progress fails: the guest did not want it */
            p->cause = PASSTHRU_HOTPLUG_CAUSE_GUEST;
            emit(p, PASSTHRU_HOTPLUG_PHASE_FAILED,
                 "the guest ejected the device before enabling it");
        }
        if (p->state != PASSTHRU_PORT_STATE_REMOVING) {
            /* The guest ejected the device without being asked */
            op_start(p, PASSTHRU_HOTPLUG_OPERATION_REMOVE,
                     PASSTHRU_HOTPLUG_CAUSE_GUEST,
                     PASSTHRU_PORT_STATE_REMOVING, NULL);
        }
        emit(p, PASSTHRU_HOTPLUG_PHASE_COMPLETED, reason);
        device_detach(p);
    }
    /* Must not fail: ACPI's eject and the slot call it with error_abort */
    signal_unplug(p, dev, &error_abort);
}

static bool passthru_is_hotpluggable_bus(HotplugHandler *hotplug_dev,
                                         BusState *bus)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);

    HotplugHandlerClass *hc;

    if (p->acpi_hp) {
        hc = HOTPLUG_HANDLER_GET_CLASS(p->acpi_hp);
        return !hc->is_hotpluggable_bus ||
               hc->is_hotpluggable_bus(p->acpi_hp, bus);
    }
    return PCIE_SLOT(p)->hotplug;
}

/*
 * Once every -device is realized, and before the first reset assigns
 * ACPI's bus selectors: take the bus back from ICH9-LPC, remembering it
 * for the signalling, and account for cold-plugged frontends.
 */
static void passthru_machine_done(Notifier *notifier, void *data)
{
    PCIEHotplugPassthru *p = container_of(notifier, PCIEHotplugPassthru,
                                          machine_done);
    BusState *bus = port_bus(p);
    BusChild *kid;

    if (bus->hotplug_handler &&
        bus->hotplug_handler != HOTPLUG_HANDLER(p)) {
        p->acpi_hp = bus->hotplug_handler;
        qbus_set_hotplug_handler(bus, OBJECT(p));
    }
    trace_passthru_port_mode(port_id(p), p->acpi_hp ? "acpi" : "native");

    QTAILQ_FOREACH(kid, &bus->children, sibling) {
        if (!is_frontend(kid->child)) {
            error_report("pcie-hotplug-passthru port '%s' accepts only "
                         "vfio-nvme and vfio-user-nvme devices, not '%s'",
                         port_id(p), object_get_typename(OBJECT(kid->child)));
            exit(1);
        }
        if (!p->dev) {
            device_attach(p, PCI_DEVICE(kid->child), &error_fatal);
        }
        set_state(p, PASSTHRU_PORT_STATE_PRESENT);
    }
}

/* Called by the frontends */

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
        emit(p, PASSTHRU_HOTPLUG_PHASE_COMPLETED, NULL);
        set_state(p, PASSTHRU_PORT_STATE_PRESENT);
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
            trace_passthru_host_gone(dev_id(hg->dev), hg->reason);
            surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_HOST_GONE, hg->reason);
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

/* QMP */

static PassthruPortInfo *port_info(PCIEHotplugPassthru *p)
{
    PassthruPortInfo *info = g_new0(PassthruPortInfo, 1);
    PCIESlot *slot = PCIE_SLOT(p);

    info->id = g_strdup(port_id(p));
    info->chassis = slot->chassis;
    info->slot = slot->slot;
    info->state = p->state;
    if (p->dev) {
        VFIOPCIDevice *vdev = VFIO_PCI_DEVICE(p->dev);
        const char *name = vdev->vbasedev.name ?: "";

        info->device = g_strdup(dev_id(p->dev));
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
    if (port_busy(p)) {
        info->has_operation = true;
        info->operation = p->op;
        info->has_elapsed_ms = true;
        info->elapsed_ms = op_elapsed_ms(p);
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

/* Properties */

static int get_removal(Object *obj, Error **errp)
{
    return PCIE_HOTPLUG_PASSTHRU(obj)->removal;
}

static void set_removal(Object *obj, int value, Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(obj);

    p->removal = value;
    /* Escalate the orderly removal in progress */
    if (value == PASSTHRU_REMOVAL_SURPRISE && p->dev &&
        p->state == PASSTHRU_PORT_STATE_REMOVING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE) {
        surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_QMP,
                        "removal=surprise set during an orderly removal");
    }
}

static void get_unplug_timeout(Object *obj, Visitor *v, const char *name,
                               void *opaque, Error **errp)
{
    visit_type_uint32(v, name, &PCIE_HOTPLUG_PASSTHRU(obj)->unplug_timeout_ms,
                      errp);
}

static void set_unplug_timeout(Object *obj, Visitor *v, const char *name,
                               void *opaque, Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(obj);
    uint32_t value;

    if (!visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    p->unplug_timeout_ms = value;
    /* A pending orderly removal gets the new timeout, from its start */
    unplug_timer_update(p);
}

/* Lifecycle */

/*
 * A reset of the VM ends the orderly removal in progress: the guest that
 * was asked is gone, and the one that boots is never told.  Complete the
 * removal, as ACPI PCI hotplug does for every slot the guest was asked
 * to eject (acpi_pcihp_update_hotplug_bus()); natively, before the slot
 * is reset, so that it comes out of the reset empty and powered off.
 */
static void passthru_reset_hold(Object *obj, ResetType type)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(obj);
    PCIEHotplugPassthruClass *k = PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p);

    if (!p->acpi_hp && p->dev && p->state == PASSTHRU_PORT_STATE_REMOVING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE) {
        PCIDevice *pdev = PCI_DEVICE(p);
        uint8_t *exp_cap = pdev->config + pdev->exp.exp_cap;
        DeviceState *dev = DEVICE(p->dev);

        trace_passthru_port_reset_removal(port_id(p), dev_id(p->dev));
        hotplug_handler_unplug(HOTPLUG_HANDLER(p), dev, &error_abort);
        object_unparent(OBJECT(dev));
        pci_word_test_and_clear_mask(exp_cap + PCI_EXP_SLTSTA,
                                     PCI_EXP_SLTSTA_PDS);
        pci_word_test_and_clear_mask(exp_cap + PCI_EXP_LNKSTA,
                                     PCI_EXP_LNKSTA_DLLLA);
    }
    if (k->parent_phases.hold) {
        k->parent_phases.hold(obj, type);
    }
}

static void passthru_realize(DeviceState *dev, Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(dev);
    ERRP_GUARD();

    PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p)->parent_realize(dev, errp);
    if (*errp) {
        return;
    }
    p->state = PASSTHRU_PORT_STATE_EMPTY;
    p->unplug_timer = timer_new_ms(QEMU_CLOCK_VIRTUAL, unplug_timeout, p);
    p->machine_done.notify = passthru_machine_done;
    qemu_add_machine_init_done_notifier(&p->machine_done);
    QTAILQ_INSERT_TAIL(&passthru_ports, p, next);
    passthru_policy_enable();
}

static void passthru_unrealize(DeviceState *dev)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(dev);

    QTAILQ_REMOVE(&passthru_ports, p, next);
    qemu_remove_machine_init_done_notifier(&p->machine_done);
    timer_free(p->unplug_timer);
    PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p)->parent_unrealize(dev);
}

static void passthru_instance_init(Object *obj)
{
    GenPCIERootPort *rp = GEN_PCIE_ROOT_PORT(obj);

    /*
     * Defaults that an NVMe needs under OVMF when hot-added: a memory
     * window, and no I/O window (NVMe has no I/O BAR, and 32 ports would
     * not fit in the I/O space otherwise).
     */
    rp->res_reserve.io = 0;
    rp->res_reserve.mem_non_pref = 2 * MiB;
}

static void passthru_class_init(ObjectClass *klass, const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    HotplugHandlerClass *hc = HOTPLUG_HANDLER_CLASS(klass);
    PCIEHotplugPassthruClass *k = PCIE_HOTPLUG_PASSTHRU_CLASS(klass);

    dc->desc = "PCIe root port for hotplug of passthrough NVMe";
    dc->hotpluggable = false;
    device_class_set_parent_realize(dc, passthru_realize,
                                    &k->parent_realize);
    device_class_set_parent_unrealize(dc, passthru_unrealize,
                                      &k->parent_unrealize);

    k->parent_pre_plug = hc->pre_plug;
    k->parent_plug = hc->plug;
    k->parent_unplug_request = hc->unplug_request;
    k->parent_unplug = hc->unplug;
    hc->pre_plug = passthru_pre_plug;
    hc->plug = passthru_plug;
    hc->unplug_request = passthru_unplug_request;
    hc->unplug = passthru_unplug;
    hc->is_hotpluggable_bus = passthru_is_hotpluggable_bus;
    resettable_class_set_parent_phases(RESETTABLE_CLASS(klass), NULL,
                                       passthru_reset_hold, NULL,
                                       &k->parent_phases);

    object_class_property_add_enum(klass, "removal", "PassthruRemoval",
                                   &PassthruRemoval_lookup,
                                   get_removal, set_removal);
    object_class_property_set_description(klass, "removal",
        "What device_del does: orderly (ask the guest) or surprise "
        "(take the device away at once)");
    object_class_property_add(klass, "unplug-timeout-ms", "uint32",
                              get_unplug_timeout, set_unplug_timeout,
                              NULL, NULL);
    object_class_property_set_description(klass, "unplug-timeout-ms",
        "Turn an orderly removal the guest has not completed after this "
        "many ms into a surprise removal (0: wait forever)");
}

static const TypeInfo passthru_info = {
    .name = TYPE_PCIE_HOTPLUG_PASSTHRU,
    .parent = TYPE_GEN_PCIE_ROOT_PORT,
    .instance_size = sizeof(PCIEHotplugPassthru),
    .instance_init = passthru_instance_init,
    .class_size = sizeof(PCIEHotplugPassthruClass),
    .class_init = passthru_class_init,
};

static void passthru_register_types(void)
{
    type_register_static(&passthru_info);
}

type_init(passthru_register_types)
