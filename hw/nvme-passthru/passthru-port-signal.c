/*
 * pcie-hotplug-passthru: telling the guest
 *
 * With ACPI PCI hotplug (q35's default) the guest is told by ICH9-LPC,
 * which takes every cold-plugged root port's bus at realize; the port
 * takes its bus back once the machine is built and hands each step to
 * ICH9-LPC.  With native PCIe hotplug it is the root port's own slot
 * (the parent class).  The port picks one of the two tables below then.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "hw/acpi/pcihp.h"
#include "hw/pci/pcie.h"
#include "hw/southbridge/ich9.h"
#include "passthru-port.h"
#include "trace.h"

/* ACPI PCI hotplug: ICH9-LPC */

static void acpi_pre_plug(PCIEHotplugPassthru *p, DeviceState *dev,
                          Error **errp)
{
    hotplug_handler_pre_plug(p->acpi_hp, dev, errp);
}

static void acpi_plug(PCIEHotplugPassthru *p, DeviceState *dev, Error **errp)
{
    hotplug_handler_plug(p->acpi_hp, dev, errp);
}

static void acpi_unplug_request(PCIEHotplugPassthru *p, DeviceState *dev,
                                Error **errp)
{
    hotplug_handler_unplug_request(p->acpi_hp, dev, errp);
}

static void acpi_unplug(PCIEHotplugPassthru *p, DeviceState *dev)
{
    hotplug_handler_unplug(p->acpi_hp, dev, &error_abort);
}

static bool acpi_is_hotpluggable_bus(PCIEHotplugPassthru *p, BusState *bus)
{
    HotplugHandlerClass *hc = HOTPLUG_HANDLER_GET_CLASS(p->acpi_hp);

    return !hc->is_hotpluggable_bus ||
           hc->is_hotpluggable_bus(p->acpi_hp, bus);
}

/*
 * An eject request to the guest; the device is gone by the time it
 * looks, and its _EJ0 then finds an empty slot.
 */
static void acpi_surprise_begin(PCIEHotplugPassthru *p, DeviceState *dev)
{
    Error *err = NULL;

    hotplug_handler_unplug_request(p->acpi_hp, dev, &err);
    if (err) {
        warn_reportf_err(err, "port '%s': cannot tell the guest: ",
                         passthru_port_id(p));
    }
}

static void acpi_surprise_end(PCIEHotplugPassthru *p)
{
}

/* Has the guest not yet ejected a slot it was asked to? */
static bool acpi_ack_pending(PCIEHotplugPassthru *p)
{
    ICH9LPCState *lpc;
    uint64_t bsel;
    Error *err = NULL;

    lpc = (ICH9LPCState *)object_dynamic_cast(OBJECT(p->acpi_hp),
                                              TYPE_ICH9_LPC_DEVICE);
    if (!lpc) {
        return false;
    }
    bsel = object_property_get_uint(OBJECT(passthru_port_bus(p)),
                                    ACPI_PCIHP_PROP_BSEL, &err);
    if (err || bsel >= ACPI_PCIHP_MAX_HOTPLUG_BUS) {
        error_free(err);
        return false;
    }
    return lpc->pm.acpi_pci_hotplug.acpi_pcihp_pci_status[bsel].down & 1;
}

/* ICH9-LPC's own reset ejects the slots it asked the guest to eject */
static void acpi_reset_removal(PCIEHotplugPassthru *p)
{
}

const PassthruSignalOps passthru_signal_acpi = {
    .name = "acpi",
    .pre_plug = acpi_pre_plug,
    .plug = acpi_plug,
    .unplug_request = acpi_unplug_request,
    .unplug = acpi_unplug,
    .is_hotpluggable_bus = acpi_is_hotpluggable_bus,
    .surprise_begin = acpi_surprise_begin,
    .surprise_end = acpi_surprise_end,
    .ack_pending = acpi_ack_pending,
    .reset_removal = acpi_reset_removal,
};

/* Native PCIe hotplug: the root port's slot */

static PCIEHotplugPassthruClass *slot(PCIEHotplugPassthru *p)
{
    return PCIE_HOTPLUG_PASSTHRU_GET_CLASS(p);
}

static void native_pre_plug(PCIEHotplugPassthru *p, DeviceState *dev,
                            Error **errp)
{
    slot(p)->parent_pre_plug(HOTPLUG_HANDLER(p), dev, errp);
}

static void native_plug(PCIEHotplugPassthru *p, DeviceState *dev,
                        Error **errp)
{
    slot(p)->parent_plug(HOTPLUG_HANDLER(p), dev, errp);
}

static void native_unplug_request(PCIEHotplugPassthru *p, DeviceState *dev,
                                  Error **errp)
{
    slot(p)->parent_unplug_request(HOTPLUG_HANDLER(p), dev, errp);
}

static void native_unplug(PCIEHotplugPassthru *p, DeviceState *dev)
{
    slot(p)->parent_unplug(HOTPLUG_HANDLER(p), dev, &error_abort);
}

static bool native_is_hotpluggable_bus(PCIEHotplugPassthru *p, BusState *bus)
{
    return PCIE_SLOT(p)->hotplug;
}

static void native_surprise_begin(PCIEHotplugPassthru *p, DeviceState *dev)
{
}

/* The card is gone from the slot, as pcie_cap_slot_do_unplug() leaves it */
static void native_slot_empty(PCIEHotplugPassthru *p)
{
    PCIDevice *pdev = PCI_DEVICE(p);
    uint8_t *exp_cap = pdev->config + pdev->exp.exp_cap;

    pci_word_test_and_clear_mask(exp_cap + PCI_EXP_SLTSTA,
                                 PCI_EXP_SLTSTA_PDS);
    pci_word_test_and_clear_mask(exp_cap + PCI_EXP_LNKSTA,
                                 PCI_EXP_LNKSTA_DLLLA);
}

/*
 * Tell the guest that the slot is empty now.  Presence Detect Changed
 * alone raises no interrupt in a Linux guest, which enables Attention
 * Button Pressed instead because the slot has a button: raise both.
 * Linux then disables the slot as a surprise removal and powers it off,
 * with no 5 s wait.
 */
static void native_surprise_end(PCIEHotplugPassthru *p)
{
    PCIDevice *pdev = PCI_DEVICE(p);
    uint8_t *exp_cap = pdev->config + pdev->exp.exp_cap;

    native_slot_empty(p);
    pci_word_test_and_set_mask(exp_cap + PCI_EXP_SLTSTA, PCI_EXP_SLTSTA_PDC);
    pcie_cap_slot_push_attention_button(pdev);
}

/*
 * Has the guest not yet turned the empty slot's power and power
 * indicator off, as Linux's pciehp does a second or so after a surprise
 * removal?
 */
static bool native_ack_pending(PCIEHotplugPassthru *p)
{
    PCIDevice *pdev = PCI_DEVICE(p);
    uint16_t ctl;

    ctl = pci_get_word(pdev->config + pdev->exp.exp_cap + PCI_EXP_SLTCTL);
    return (ctl & PCI_EXP_SLTCTL_PCC) != PCI_EXP_SLTCTL_PWR_OFF ||
           (ctl & PCI_EXP_SLTCTL_PIC) != PCI_EXP_SLTCTL_PWR_IND_OFF;
}

/*
 * The attention-button request dies with the reset: complete the
 * removal, before the slot is reset, so that it comes out of the reset
 * empty and powered off.
 */
static void native_reset_removal(PCIEHotplugPassthru *p)
{
    DeviceState *dev = DEVICE(p->dev);

    trace_passthru_port_reset_removal(passthru_port_id(p),
                                      passthru_dev_id(p->dev));
    hotplug_handler_unplug(HOTPLUG_HANDLER(p), dev, &error_abort);
    object_unparent(OBJECT(dev));
    native_slot_empty(p);
}

const PassthruSignalOps passthru_signal_native = {
    .name = "native",
    .pre_plug = native_pre_plug,
    .plug = native_plug,
    .unplug_request = native_unplug_request,
    .unplug = native_unplug,
    .is_hotpluggable_bus = native_is_hotpluggable_bus,
    .surprise_begin = native_surprise_begin,
    .surprise_end = native_surprise_end,
    .ack_pending = native_ack_pending,
    .reset_removal = native_reset_removal,
};
