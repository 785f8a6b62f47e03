/*
 * pcie-hotplug-passthru: query-passthru-hotplug-admission
 *
 * Would a device_add of a passthrough NVMe be admitted now?  The query
 * runs the rules device_add runs, the same functions, with a
 * PassthruCheck that collects every refusal instead of stopping at the
 * first (passthru-check.c):
 *
 *   - the driver, and what device_add itself checks: the bus, a
 *     migration in progress, a free id, the properties;
 *   - the port's rules for the device (passthru_port_check_plug(): the
 *     device's own rules in passthru-port-frontend.c, the 32-device
 *     limit, an occupied port, the pending operation, the guest's
 *     acknowledgement of a removal);
 *   - what the realize would find on the host, read from sysfs for
 *     kernel VFIO (passthru_frontend_check_host()), the socket's
 *     existence for vfio-user;
 *   - the migration blocker a device brings (-only-migratable, a
 *     migration in progress);
 *   - the VM-wide rules (passthru_policy_check()), which matter for a
 *     VM that has no port yet.
 *
 * Without side effects: the device is an object of the driver's type
 * with the properties set, never given an id in the QOM tree, a bus or
 * a realize, so that no host device is opened, no event is sent and no
 * state changes; it is freed before the answer.  fd= is not set: it
 * would take a file descriptor from the monitor.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qmp/qerror.h"
#include "qapi/qapi-commands-passthru-hotplug.h"
#include "qobject/qdict.h"
#include "qobject/qstring.h"
#include "qom/object_interfaces.h"
#include "migration/misc.h"
#include "system/system.h"
#include "hw/qdev-core.h"
#include "hw/sysbus.h"
#include "passthru-port.h"

/* The arguments device_add takes itself, not as properties */
static const char *const device_add_args[] = { "driver", "bus", "id" };

typedef struct BusSearch {
    const char *name;
    BusState *bus;
} BusSearch;

static int bus_by_name(BusState *bus, void *opaque)
{
    BusSearch *s = opaque;

    if (!strcmp(bus->name, s->name)) {
        s->bus = bus;
        return -1;
    }
    return 0;
}

/*
 * The port whose bus @path names: a bus name, or a path whose last
 * element is one, as device_add takes them.  NULL, with the refusal,
 * when there is none.
 */
static PCIEHotplugPassthru *find_port(const char *path, PassthruCheck *c)
{
    BusSearch s = { .name = path ? strrchr(path, '/') : NULL };
    PCIEHotplugPassthru *p;

    if (!path) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_PORT_MISSING,
                        "no bus given: name a pcie-hotplug-passthru port "
                        "with bus=");
        return NULL;
    }
    s.name = s.name ? s.name + 1 : path;
    QTAILQ_FOREACH(p, &passthru_ports, next) {
        if (!strcmp(passthru_port_bus(p)->name, s.name)) {
            return p;
        }
    }
    qbus_walk_children(sysbus_get_default(), NULL, bus_by_name, NULL, NULL,
                       &s);
    if (s.bus) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_NOT_PASSTHRU_PORT,
                        "bus '%s' is not a pcie-hotplug-passthru port's",
                        path);
    } else {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_PORT_MISSING,
                        "Bus '%s' not found", path);
    }
    return NULL;
}

/*
 * The device device_add would create from @args, unrealized and outside
 * the QOM tree; NULL when @driver is not a passthrough frontend.
 */
static DeviceState *device_of(const char *driver, const char *port,
                              QDict *args, PassthruCheck *c)
{
    ObjectClass *oc = module_object_class_by_name(driver);
    const char *id = qdict_get_try_str(args, "id");
    g_autoptr(QDict) props = qdict_clone_shallow(args);
    Error *err = NULL;
    DeviceState *dev;
    size_t i;

    if (!oc || object_class_is_abstract(oc) ||
        !passthru_is_frontend_class(oc)) {
        passthru_refuse_not_frontend(port, driver, c);
        return NULL;
    }
    if (id && object_resolve_path_component(
                  machine_get_container("peripheral"), id)) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_ID_IN_USE,
                        "Duplicate device ID '%s'", id);
    }

    dev = DEVICE(object_new_with_class(oc));
    dev->id = g_strdup(id);
    for (i = 0; i < ARRAY_SIZE(device_add_args); i++) {
        qdict_del(props, device_add_args[i]);
    }
    qdict_del(props, "fd");
    object_set_properties_from_keyval(OBJECT(dev), props, true, &err);
    if (err) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_BAD_PROPERTY, "%s",
                        error_get_pretty(err));
        error_free(err);
    }
    return dev;
}

/* A vfio-user server listens on the socket: no connection is made */
static void check_socket(DeviceState *dev, QDict *args, PassthruCheck *c)
{
    QDict *sock = qdict_get_qdict(args, "socket");
    const char *path = sock ? qdict_get_try_str(sock, "path") : NULL;
    struct stat st;

    if (!path) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_HOST_DEVICE_MISSING,
                        "%s '%s': no vfio-user server: give socket=",
                        object_get_typename(OBJECT(dev)), dev->id ?: "");
    } else if (stat(path, &st) || !S_ISSOCK(st.st_mode)) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_HOST_DEVICE_MISSING,
                        "%s '%s': no vfio-user server socket at %s",
                        object_get_typename(OBJECT(dev)), dev->id ?: "",
                        path);
    }
}

/*
 * A device on a port blocks migration (passthru_device_attach()), and
 * device_add of one is refused where a blocker may not be added.
 */
static void check_migration(PassthruCheck *c)
{
    if (migration_is_running()) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_MIGRATION,
                        "device_add not allowed while migrating");
    } else if (only_migratable) {
        passthru_refuse(c, PASSTHRU_REFUSAL_CODE_MIGRATION,
                        "a passthrough NVMe device blocks migration, and "
                        "-only-migratable refuses devices that do");
    }
}

static bool check_arg_types(QDict *args, Error **errp)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(device_add_args); i++) {
        QObject *v = qdict_get(args, device_add_args[i]);

        if (v && !qobject_to(QString, v)) {
            error_setg(errp, "Invalid parameter type for 'device.%s', "
                       "expected: string", device_add_args[i]);
            return false;
        }
    }
    if (!qdict_haskey(args, "driver")) {
        error_setg(errp, QERR_MISSING_PARAMETER, "device.driver");
        return false;
    }
    return true;
}

PassthruAdmission *qmp_query_passthru_hotplug_admission(QObject *device,
                                                        Error **errp)
{
    QDict *args = qobject_to(QDict, device);
    g_autoptr(PassthruAdmission) ans = g_new0(PassthruAdmission, 1);
    PassthruCheck c = { .tail = &ans->refusals };
    PCIEHotplugPassthru *p;
    const char *port;
    DeviceState *dev;

    if (!args) {
        error_setg(errp, "'device' must be an object: the arguments of "
                   "device_add");
        return NULL;
    }
    if (!check_arg_types(args, errp)) {
        return NULL;
    }
    port = qdict_get_try_str(args, "bus");
    p = find_port(port, &c);
    if (p) {
        port = passthru_port_id(p);
    }
    dev = device_of(qdict_get_str(args, "driver"), p ? port : NULL, args,
                    &c);
    passthru_port_check_plug(p, port ?: "", dev, true, &c);
    if (dev && object_dynamic_cast(OBJECT(dev), TYPE_VFIO_USER_NVME)) {
        check_socket(dev, args, &c);
    } else if (dev && !qdict_haskey(args, "fd")) {
        passthru_frontend_check_host(dev, &c);
    }
    check_migration(&c);
    passthru_policy_check(&c);
    if (dev) {
        object_unref(OBJECT(dev));
    }
    ans->admissible = !c.refused;
    return g_steal_pointer(&ans);
}
