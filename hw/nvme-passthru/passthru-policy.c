/*
 * The VM-wide rules of NVMe passthrough hotplug
 *
 * A VM has passthrough hotplug, and these rules, exactly when it has a
 * pcie-hotplug-passthru port.  They are vSphere's for hot-plugging
 * VMDirectPath I/O devices: UEFI firmware, all guest memory locked, no
 * CPU or memory hotplug, at most 128 vCPUs, no vIOMMU visible to the
 * guest, at most 32 passthrough NVMe devices, machine type q35.
 *
 * Once the machine is built, a VM that breaks a rule does not start: the
 * error names the rule and what to change.  While it runs, device_add
 * of a CPU, a memory device or a vIOMMU is refused and changes nothing.
 * The 32-device limit at run time and the migration and snapshot block
 * are the port's (pcie-hotplug-passthru.c).  The admission query checks
 * a VM against the same rules (passthru_policy_check()).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qobject/qdict.h"
#include "hw/boards.h"
#include "hw/qdev-core.h"
#include "hw/i386/pc.h"
#include "hw/i386/x86-iommu.h"
#include "hw/mem/memory-device.h"
#include "hw/pci-host/q35.h"
#include "hw/virtio/virtio-iommu.h"
#include "hw/nvme-passthru/nvme-passthru.h"
#include "system/system.h"
#include "hw/core/cpu.h"
#include "trace.h"

static const char *viommu_types[] = {
    TYPE_X86_IOMMU_DEVICE, TYPE_VIRTIO_IOMMU_PCI, TYPE_VIRTIO_IOMMU,
};

static const char *viommu_type_of(ObjectClass *oc)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(viommu_types); i++) {
        if (object_class_dynamic_cast(oc, viommu_types[i])) {
            return viommu_types[i];
        }
    }
    return NULL;
}

static int find_viommu(Object *obj, void *opaque)
{
    Object **found = opaque;

    if (object_dynamic_cast(obj, TYPE_DEVICE) &&
        viommu_type_of(object_get_class(obj))) {
        *found = obj;
        return 1;
    }
    return 0;
}

/*
 * Every rule the built machine must meet.  Returns false when the
 * checks stop (passthru_refuse()).
 */
static bool passthru_policy_check_machine(MachineState *ms, PassthruCheck *c)
{
    PCMachineState *pcms;
    Object *viommu = NULL;
    unsigned ports = passthru_port_count();

    pcms = (PCMachineState *)object_dynamic_cast(OBJECT(ms),
                                                 TYPE_PC_MACHINE);
    if (!pcms || !object_resolve_path_type("", TYPE_Q35_HOST_DEVICE, NULL)) {
        if (!passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_MACHINE_TYPE,
                             "passthrough hotplug needs the q35 machine "
                             "type, not '%s': use -machine q35",
                             MACHINE_GET_CLASS(ms)->name)) {
            return false;
        }
    }
    /* Without pflash0, the machine runs a BIOS image: -bios or SeaBIOS */
    if (pcms && !pcms->flash[0] &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_FIRMWARE,
                         "passthrough hotplug needs UEFI firmware in pflash "
                         "(e.g. OVMF), not the BIOS image '%s': drop -bios "
                         "and use -drive if=pflash,format=raw,readonly=on,"
                         "file=OVMF_CODE.fd (and a VARS pflash)",
                         ms->firmware ?: "bios-256k.bin")) {
        return false;
    }
    if (mlock_state != MLOCK_ON &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_MEMLOCK,
                         "passthrough hotplug needs all guest memory "
                         "locked%s: use -overcommit mem-lock=on",
                         mlock_state == MLOCK_ON_FAULT ?
                         " (mem-lock=on-fault locks a page only once it is "
                         "used)" : "")) {
        return false;
    }
    if (ms->smp.max_cpus != ms->smp.cpus &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_CPU_HOTPLUG,
                         "passthrough hotplug does not allow CPU hotplug: "
                         "-smp maxcpus (%u) must equal cpus (%u)",
                         ms->smp.max_cpus, ms->smp.cpus)) {
        return false;
    }
    if (ms->smp.cpus > PASSTHRU_MAX_VCPUS &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_VCPUS,
                         "passthrough hotplug allows at most %d vCPUs, not "
                         "%u: lower -smp", PASSTHRU_MAX_VCPUS,
                         ms->smp.cpus)) {
        return false;
    }
    if ((ms->ram_slots || ms->maxram_size > ms->ram_size) &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_MEMORY_HOTPLUG,
                         "passthrough hotplug does not allow memory "
                         "hotplug: drop slots= and maxmem= from -m")) {
        return false;
    }
    object_child_foreach_recursive(object_get_root(), find_viommu, &viommu);
    if (viommu &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_VIOMMU,
                         "passthrough hotplug does not allow a vIOMMU "
                         "visible to the guest: remove the %s device",
                         object_get_typename(viommu))) {
        return false;
    }
    if (ports > PASSTHRU_MAX_DEVICES &&
        !passthru_refuse(c, PASSTHRU_REFUSAL_CODE_POLICY_PORTS,
                         "passthrough hotplug allows at most %d "
                         "pcie-hotplug-passthru ports, not %u",
                         PASSTHRU_MAX_DEVICES, ports)) {
        return false;
    }
    return true;
}

bool passthru_policy_check(PassthruCheck *c)
{
    return passthru_policy_check_machine(MACHINE(qdev_get_machine()), c);
}

static void passthru_policy_machine_done(Notifier *notifier, void *data)
{
    Error *err = NULL;
    PassthruCheck c = PASSTHRU_CHECK_ERRP(&err);

    if (!passthru_policy_check(&c)) {
        error_report_err(err);
        exit(1);
    }
}

/* At run time: refuse what would break a rule before it is created */
static bool passthru_policy_hide_device(DeviceListener *listener,
                                        const QDict *device_opts,
                                        bool from_json, Error **errp)
{
    const char *driver = qdict_get_try_str(device_opts, "driver");
    ObjectClass *oc;
    const char *rule = NULL;

    if (!driver || !phase_check(PHASE_MACHINE_READY)) {
        return false;
    }
    oc = module_object_class_by_name(driver);
    if (!oc) {
        return false;
    }
    if (object_class_dynamic_cast(oc, TYPE_CPU)) {
        rule = "does not allow CPU hotplug";
    } else if (object_class_dynamic_cast(oc, TYPE_MEMORY_DEVICE)) {
        rule = "does not allow memory hotplug";
    } else if (viommu_type_of(oc)) {
        rule = "does not allow a vIOMMU visible to the guest";
    }
    if (rule) {
        error_setg(errp, "passthrough hotplug %s: cannot add '%s'", rule,
                   driver);
    }
    return false;
}

static Notifier passthru_policy_notifier = {
    .notify = passthru_policy_machine_done,
};

static DeviceListener passthru_policy_listener = {
    .hide_device = passthru_policy_hide_device,
};

void passthru_policy_enable(void)
{
    static bool enabled;

    if (!enabled) {
        enabled = true;
        qemu_add_machine_init_done_notifier(&passthru_policy_notifier);
        device_listener_register(&passthru_policy_listener);
    }
}
