/*
 * Test harness for NVMe passthrough hotplug qtests: vfio-user servers,
 * QMP events, query-passthru-hotplug, and the guest's side of ACPI PCI
 * hotplug and native PCIe hotplug on pcie-hotplug-passthru ports
 *
 * Port rpN (N = 1..MAX_PORTS) is at pcie.0 slot 3 + N, has chassis N and
 * the guest gives it secondary bus N.  Server i exports an emulated NVMe
 * controller (or a NIC) over a UNIX socket in the test's folder.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TESTS_QTEST_NVME_PASSTHRU_HARNESS_H
#define TESTS_QTEST_NVME_PASSTHRU_HARNESS_H

#include "../libqtest.h"
#include "../libqos/pci.h"
#include "../libqos/pci-pc.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_regs.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#include "qobject/qjson.h"

/* ACPI PCI hotplug registers of q35 (hw/acpi/pcihp.c) */
#define ACPI_PCIHP_ADDR_ICH9    0x0cc0
#define PCI_UP_BASE             0x0000
#define PCI_DOWN_BASE           0x0004
#define PCI_EJ_BASE             0x0008
#define PCI_SEL_BASE            0x0010

#define TIMEOUT_US              (10 * G_USEC_PER_SEC)
#define MAX_PORTS               2
#define MAX_SERVERS             33
#define UNPLUG_TIMEOUT_MS       200
/* The serial number of the NVMe controller a server exports */
#define SERVER_SERIAL           "hp0"
#define MS_TO_NS(ms)            ((int64_t)(ms) * 1000 * 1000)

/* What the passthrough hotplug policy asks of every VM with a port */
#define POLICY_ARGS \
    "-drive if=pflash,format=raw,readonly=on," \
    "file=/usr/share/OVMF/OVMF_CODE_4M.fd -overcommit mem-lock=on"

#define NATIVE_HOTPLUG_GLOBAL \
    "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"
#define NATIVE_HOTPLUG "-global " NATIVE_HOTPLUG_GLOBAL
#define ERR_OUTSIDE_PORT \
    "vfio-user-nvme 'nvme0' must be plugged into a pcie-hotplug-passthru port"

#define ERR_BUSY_ADD \
    "another passthrough hotplug operation is pending: " \
    "add of 'nvme0' on port 'rp1'"
#define ERR_BUSY_REMOVE \
    "another passthrough hotplug operation is pending: " \
    "remove of 'nvme0' on port 'rp1'"

/* For expect_hotplug_event(): the event has a reason, whatever its text */
extern const char REASON_ANY[];

typedef struct Mode {
    const char *name;       /* "hotplug-mode" of query-passthru-hotplug */
    bool native;
} Mode;

/* Both signalling modes, ACPI first: tests run in each */
#define N_MODES 2
extern const Mode modes[N_MODES];

typedef enum ServerKind {
    SERVER_NVME,            /* exports an emulated NVMe controller */
    SERVER_NIC,             /* exports an e1000e: class 02:00:00 */
} ServerKind;

typedef struct Server {
    char *sock;
    GPid pid;
    bool running;
} Server;

/*
 * Port rpN (N = 1..MAX_PORTS) is at pcie.0 slot 3 + N, has chassis N and
 * the guest gives it secondary bus N.
 */
typedef struct Test {
    const Mode *mode;
    int nports;
    char *dir;
    Server srv[MAX_SERVERS];
    const char *backend[MAX_PORTS + 1];  /* socket of the device on rpN */
    QTestState *qts;
    QPCIBus *pcibus;
    GQueue events;                       /* QMP events not yet checked */
} Test;

extern const char *const port_ids[MAX_PORTS + 1];

#define PORT(n) port_ids[n]

bool server_exited(Server *s);
void server_start(Test *t, int i, ServerKind kind);
void server_kill(Server *s);
bool server_wait_exit(Server *s);
void server_stop(Server *s);
bool event_cb(QTestState *qts, const char *name, QDict *event,
              void *opaque);
QDict *event_take(Test *t, const char *name);
void events_sync(Test *t);
QDict *event_wait(Test *t, const char *name);
void expect_hotplug_event(Test *t, const char *port,
                          const char *device, const char *operation,
                          const char *phase, const char *cause,
                          const char *reason);
void expect_device_deleted(Test *t, const char *id);
void assert_no_hotplug_event(Test *t);
QDict *query(Test *t);
QDict *port_info(QDict *resp, int n);
void check_port(Test *t, int n, const char *state, const char *id,
                const char *operation);
void port_set(Test *t, int n, const char *property, QObject *value);
QPCIDevice *port_dev(Test *t, int n);
QPCIDevice *nvme_dev(Test *t, int n);
void port_number_bus(Test *t, int n);
void slot_power(Test *t, int n, bool on);
int port_bsel(Test *t, int n);
void acpi_eject(Test *t, int n);
void guest_enable(Test *t, int n);
void guest_eject(Test *t, int n);
void expect_guest_told_gone(Test *t, int n);
void guest_ack_gone(Test *t, int n);
Test *test_start_extra(const Mode *mode, int nports, const char *extra);
Test *test_start(const Mode *mode, int nports);
Test *test_start_full(const Mode *mode);
Test *test_new(void);
void test_end(Test *t);
void test_free(Test *t);
void add_start(Test *t, int n, int i, const char *id);
void add_start_args(Test *t, int n, int i, const char *id, QDict *args);
void add_finish(Test *t, int n, const char *id);
void hot_add(Test *t, int n, int i, const char *id);
void remove_start(Test *t, int n, const char *id);
void remove_finish(Test *t, int n, const char *id);
void remove_orderly(Test *t, int n, const char *id);
void remove_surprise(Test *t, int n, const char *id);
void expect_removed(Test *t, int n, const char *id);
void expect_surprise_removal(Test *t, int n, const char *id,
                             const char *cause, const char *reason);
QDict *nvme_args(Test *t, const char *bus, int i, const char *id);
void assert_generic_error(QDict *err, const char *desc);
void device_add_refused(Test *t, QDict *args, const char *desc);
void device_del_refused(Test *t, const char *id, const char *desc);
char *run_qemu_with(const Mode *mode, const char *args, int *status);
void add_test(const Mode *mode, const char *name, void (*fn)(const void *));

#endif
