/*
 * pcie-hotplug-passthru: a PCIe root port for hotplug of passthrough NVMe
 *
 * A "pcie-root-port" that accepts only passthrough NVMe controllers
 * (vfio-pci, as libvirt's <hostdev> adds them, and the vfio-nvme and
 * vfio-user-nvme frontends), runs one hotplug operation at a time in the
 * whole VM, can take a device away from the guest at once (surprise
 * removal), and reports every operation with the PASSTHRU_HOTPLUG event
 * and query-passthru-hotplug.
 *
 * This file is the device: its hotplug callbacks decide what may happen
 * (what the device must be is in passthru-port-frontend.c) and move the
 * state machine (passthru-port-state.c), then hand the signalling to
 * ACPI PCI hotplug or the slot (passthru-port-signal.c).  The query is
 * in passthru-port-qmp.c.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qemu/module.h"
#include "qemu/units.h"
#include "hw/pci/pcie_port.h"
#include "system/system.h"
#include "passthru-port.h"
#include "trace.h"

/*
 * A guest's nvme driver enables a hot-added controller within a second,
 * even under TCG; one that has not after this long has no driver, or is
 * not running an OS, and holds up every other operation in the VM.
 */
#define PASSTHRU_ADD_TIMEOUT_MS_DEFAULT 30000

/* HotplugHandler: the policy, then the signalling */

bool passthru_port_check_plug(PCIEHotplugPassthru *p, const char *port,
                              DeviceState *dev, bool hotplugged,
                              PassthruCheck *c)
{
    if (dev && !passthru_is_frontend(dev)) {
        if (!passthru_refuse_not_frontend(port,
                                          object_get_typename(OBJECT(dev)),
                                          c)) {
            return false;
        }
    } else if (dev && !passthru_frontend_check(port, dev, c)) {
        return false;
    }
    if (!passthru_check_device_count(c)) {
        return false;
    }
    if (p && p->dev &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_PORT_OCCUPIED,
                         "port '%s' already holds '%s'", port,
                         passthru_dev_id(p->dev))) {
        return false;
    }
    if (!hotplugged) {
        return true;
    }
    if (!passthru_check_pending(c)) {
        return false;
    }
    /*
     * A device plugged before the guest has finished with the previous
     * one would be taken for it and ejected.
     */
    if (p && p->signal->ack_pending(p) &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_REMOVAL_UNACKNOWLEDGED,
                         "port '%s': the guest has not yet acknowledged the "
                         "removal of the previous device", port)) {
        return false;
    }
    return true;
}

static void passthru_pre_plug(HotplugHandler *hotplug_dev, DeviceState *dev,
                              Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);
    PassthruCheck c = PASSTHRU_CHECK_ERRP(errp);

    trace_passthru_port_pre_plug(passthru_port_id(p), dev->id ?: "");
    if (!passthru_port_check_plug(p, passthru_port_id(p), dev,
                                  dev->hotplugged, &c)) {
        return;
    }
    p->signal->pre_plug(p, dev, errp);
    trace_passthru_port_pre_plug_done(passthru_port_id(p), dev->id ?: "");
}

static void passthru_plug(HotplugHandler *hotplug_dev, DeviceState *dev,
                          Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);
    PassthruCheck c = PASSTHRU_CHECK_ERRP(errp);
    ERRP_GUARD();

    /*
     * Everything that may refuse the device comes before the guest is
     * told of it: what the realized device turns out to be, and, with
     * -only-migratable, the migration blocker.  A refused device is
     * unrealized again by qdev, and no DEVICE_DELETED is sent.
     */
    if (!passthru_frontend_check_realized(passthru_port_id(p),
                                          PCI_DEVICE(dev), &c) ||
        !passthru_device_attach(p, PCI_DEVICE(dev), errp)) {
        return;
    }
    p->signal->plug(p, dev, errp);
    if (*errp) {
        passthru_device_detach(p);
        return;
    }
    passthru_frontend_adopt(p->dev);
    if (dev->hotplugged) {
        passthru_op_start(p, PASSTHRU_HOTPLUG_OPERATION_ADD,
                          PASSTHRU_HOTPLUG_CAUSE_QMP,
                          PASSTHRU_PORT_STATE_ADDING, NULL);
        passthru_op_timer_update(p);
        passthru_port_device_config_written(p->dev);
    } else {
        passthru_set_state(p, PASSTHRU_PORT_STATE_PRESENT);
    }
}

static void passthru_unplug_request(HotplugHandler *hotplug_dev,
                                    DeviceState *dev, Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);
    ERRP_GUARD();

    if (!p->dev || DEVICE(p->dev) != dev) {
        /* Frontends refuse any other place, so this is a bug */
        error_setg(errp, "port '%s' does not hold '%s'", passthru_port_id(p),
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
        trace_passthru_port_request_again(passthru_port_id(p),
                                          passthru_dev_id(p->dev));
        p->signal->unplug_request(p, dev, errp);
        return;
    }
    /*
     * device_del of the device being added cancels the add: the guest
     * has not enabled the device, so no driver of it is using it, and a
     * management stack that gave up on the add gets DEVICE_DELETED at
     * once, in either removal mode.
     */
    if (p->state == PASSTHRU_PORT_STATE_ADDING) {
        passthru_surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_QMP,
                                 "device_del cancelled the add");
        return;
    }
    /* One operation at a time */
    if (!passthru_check_no_pending(errp)) {
        error_append_hint(errp, "device_del of the device being added "
                          "cancels the add; a removal in progress can be "
                          "forced by setting the port's removal property "
                          "to surprise.\n");
        return;
    }
    if (p->removal == PASSTHRU_REMOVAL_SURPRISE) {
        passthru_surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_QMP,
                                 "device_del on a port with removal=surprise");
        return;
    }
    p->signal->unplug_request(p, dev, errp);
    if (*errp) {
        return;
    }
    passthru_op_start(p, PASSTHRU_HOTPLUG_OPERATION_REMOVE,
                      PASSTHRU_HOTPLUG_CAUSE_QMP,
                      PASSTHRU_PORT_STATE_REMOVING, NULL);
    passthru_op_timer_update(p);
}

/* The device leaves the bus: the guest ejected it, or we took it away */
static void passthru_unplug(HotplugHandler *hotplug_dev, DeviceState *dev,
                            Error **errp)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);
    bool surprise = p->op == PASSTHRU_HOTPLUG_OPERATION_SURPRISE_REMOVE &&
                    p->state == PASSTHRU_PORT_STATE_REMOVING;
    /* A reset ejects the slots the guest was asked to eject */
    const char *reason = resettable_is_in_reset(OBJECT(p)) ?
                         "completed by a reset of the VM" : NULL;

    if (!surprise && p->dev == PCI_DEVICE(dev)) {
        timer_del(p->op_timer);
        if (p->state == PASSTHRU_PORT_STATE_ADDING) {
            /* The add in progress fails: the guest did not want it */
            p->cause = PASSTHRU_HOTPLUG_CAUSE_GUEST;
            passthru_emit(p, PASSTHRU_HOTPLUG_PHASE_FAILED,
                          "the guest ejected the device before enabling it");
        }
        if (p->state != PASSTHRU_PORT_STATE_REMOVING) {
            /* The guest ejected the device without being asked */
            passthru_op_start(p, PASSTHRU_HOTPLUG_OPERATION_REMOVE,
                              PASSTHRU_HOTPLUG_CAUSE_GUEST,
                              PASSTHRU_PORT_STATE_REMOVING, NULL);
        }
        passthru_emit(p, PASSTHRU_HOTPLUG_PHASE_COMPLETED, reason);
        passthru_device_detach(p);
    }
    /* Must not fail: ACPI's eject and the slot call it with error_abort */
    p->signal->unplug(p, dev);
}

static bool passthru_is_hotpluggable_bus(HotplugHandler *hotplug_dev,
                                         BusState *bus)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(hotplug_dev);

    return p->signal->is_hotpluggable_bus(p, bus);
}

/*
 * ICH9-LPC takes the secondary bus of every cold-plugged bridge for ACPI
 * PCI hotplug (acpi_pcihp_device_plug_cb()), right after the bridge is
 * realized, by setting the bus's hotplug-handler link.  The port keeps
 * its bus instead, and remembers ICH9-LPC for the signalling: so its own
 * callbacks see every device plugged into it, cold or hot, before the
 * device is realized, in either mode.
 */
static void bus_get_hotplug_handler(Object *obj, Visitor *v,
                                    const char *name, void *opaque,
                                    Error **errp)
{
    BusState *bus = BUS(obj);
    g_autofree char *path = bus->hotplug_handler ?
        object_get_canonical_path(OBJECT(bus->hotplug_handler)) :
        g_strdup("");

    visit_type_str(v, name, &path, errp);
}

static void bus_set_hotplug_handler(Object *obj, Visitor *v,
                                    const char *name, void *opaque,
                                    Error **errp)
{
    PCIEHotplugPassthru *p = opaque;
    g_autofree char *path = NULL;
    Object *handler;

    if (!visit_type_str(v, name, &path, errp)) {
        return;
    }
    handler = object_resolve_path_type(path, TYPE_HOTPLUG_HANDLER, NULL);
    if (!handler) {
        error_setg(errp, "port '%s': '%s' is no hotplug handler",
                   passthru_port_id(p), path);
        return;
    }
    if (handler == OBJECT(p)) {
        BUS(obj)->hotplug_handler = HOTPLUG_HANDLER(p);
        return;
    }
    p->acpi_hp = HOTPLUG_HANDLER(handler);
    p->signal = &passthru_signal_acpi;
}

static void passthru_keep_bus(PCIEHotplugPassthru *p)
{
    Object *bus = OBJECT(passthru_port_bus(p));

    object_property_del(bus, QDEV_HOTPLUG_HANDLER_PROPERTY);
    object_property_add(bus, QDEV_HOTPLUG_HANDLER_PROPERTY,
                        "link<" TYPE_HOTPLUG_HANDLER ">",
                        bus_get_hotplug_handler, bus_set_hotplug_handler,
                        NULL, p);
}

/* Once the machine is built, the signalling is settled */
static void passthru_machine_done(Notifier *notifier, void *data)
{
    PCIEHotplugPassthru *p = container_of(notifier, PCIEHotplugPassthru,
                                          machine_done);

    trace_passthru_port_mode(passthru_port_id(p), p->signal->name);
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
        passthru_surprise_remove(p, PASSTHRU_HOTPLUG_CAUSE_QMP,
                                 "removal=surprise set during an orderly "
                                 "removal");
    }
}

/*
 * unplug-timeout-ms and add-timeout-ms: @opaque is the field's offset in
 * the port.  A new value applies to the pending operation at once,
 * counted from its start.
 */
static uint32_t *timeout_field(Object *obj, void *opaque)
{
    return (uint32_t *)((char *)obj + (uintptr_t)opaque);
}

static void get_timeout(Object *obj, Visitor *v, const char *name,
                        void *opaque, Error **errp)
{
    visit_type_uint32(v, name, timeout_field(obj, opaque), errp);
}

static void set_timeout(Object *obj, Visitor *v, const char *name,
                        void *opaque, Error **errp)
{
    uint32_t value;

    if (!visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    *timeout_field(obj, opaque) = value;
    passthru_op_timer_update(PCIE_HOTPLUG_PASSTHRU(obj));
}

/* Lifecycle */

/*
 * A reset of the VM ends the orderly removal in progress: the guest that
 * was asked is gone, and the one that boots is never told.  The removal
 * completes, as ACPI PCI hotplug does for every slot the guest was asked
 * to eject (acpi_pcihp_update_hotplug_bus()); natively before the slot is
 * reset, so that it comes out of the reset empty and powered off.
 */
static void passthru_reset_hold(Object *obj, ResetType type)
{
    PCIEHotplugPassthru *p = PCIE_HOTPLUG_PASSTHRU(obj);
    PCIEHotplugPassthruClass *k = PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p);

    if (p->dev && p->state == PASSTHRU_PORT_STATE_REMOVING &&
        p->op == PASSTHRU_HOTPLUG_OPERATION_REMOVE) {
        p->signal->reset_removal(p);
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
    /* The slot's own, unless ICH9-LPC turns out to want the bus */
    p->signal = &passthru_signal_native;
    passthru_keep_bus(p);
    p->op_timer = timer_new_ms(QEMU_CLOCK_VIRTUAL, passthru_op_timeout, p);
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
    timer_free(p->op_timer);
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
    PCIE_HOTPLUG_PASSTHRU(obj)->add_timeout_ms =
        PASSTHRU_ADD_TIMEOUT_MS_DEFAULT;
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
    resettable_class_set_parent_phases(RESETTABLE_CLASS(klass), NULL,
                                       passthru_reset_hold, NULL,
                                       &k->parent_phases);

    k->parent_pre_plug = hc->pre_plug;
    k->parent_plug = hc->plug;
    k->parent_unplug_request = hc->unplug_request;
    k->parent_unplug = hc->unplug;
    hc->pre_plug = passthru_pre_plug;
    hc->plug = passthru_plug;
    hc->unplug_request = passthru_unplug_request;
    hc->unplug = passthru_unplug;
    hc->is_hotpluggable_bus = passthru_is_hotpluggable_bus;

    object_class_property_add_enum(klass, "removal", "PassthruRemoval",
                                   &PassthruRemoval_lookup,
                                   get_removal, set_removal);
    object_class_property_set_description(klass, "removal",
        "What device_del does: orderly (ask the guest) or surprise "
        "(take the device away at once)");
    object_class_property_add(klass, "unplug-timeout-ms", "uint32",
                              get_timeout, set_timeout, NULL,
                              (void *)offsetof(PCIEHotplugPassthru,
                                               unplug_timeout_ms));
    object_class_property_set_description(klass, "unplug-timeout-ms",
        "Turn an orderly removal the guest has not completed after this "
        "many ms into a surprise removal (0: wait forever)");
    object_class_property_add(klass, "add-timeout-ms", "uint32",
                              get_timeout, set_timeout, NULL,
                              (void *)offsetof(PCIEHotplugPassthru,
                                               add_timeout_ms));
    object_class_property_set_description(klass, "add-timeout-ms",
        "Fail a hot-add that the guest has not completed (enabled the "
        "device) after this many ms, and take the device away (0: wait "
        "forever)");
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
