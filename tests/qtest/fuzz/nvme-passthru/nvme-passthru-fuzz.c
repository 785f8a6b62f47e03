/*
 * Fuzz targets for NVMe passthrough hotplug
 *
 * The VM: q35 with two pcie-hotplug-passthru ports, rp1 and rp2, and an
 * in-process fake vfio-user server (fake-vfio-user-server.c) behind the
 * vfio-user-nvme frontends that the input plugs.  The input is a list of
 * operations: the guest's config space accesses (ECAM, all 4 KiB) to the
 * ports and the devices behind them, its accesses to the ACPI PCI hotplug
 * registers, MMIO to the device, and the host's device_add, orderly
 * device_del, surprise removal (removal=surprise, or the server closing
 * its socket), clock steps (the unplug timeout), system resets.
 *
 *   nvme-passthru-hotplug-acpi     the operations, ACPI PCI hotplug
 *   nvme-passthru-hotplug-native   the same, native PCIe hotplug
 *   vfio-user-nvme-server          first rules that make the server
 *                                  misbehave at chosen messages, then a
 *                                  hot-add of rp1 and the operations
 *
 * Every input starts from the same state: both ports empty, buses
 * numbered, after a system reset.  Whatever the input leaves on a port
 * is removed (by surprise) before the next one.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qobject/qdict.h"
#include "qom/object.h"
#include "monitor/qdev.h"
#include "qapi/qapi-commands-qdev.h"
#include "qapi/qapi-commands-passthru-hotplug.h"
#include "qapi/qapi-types-passthru-hotplug.h"
#include "hw/pci/pci.h"
#include "tests/qtest/libqtest.h"
#include "tests/qtest/fuzz/fuzz.h"
#include "fake-vfio-user-server.h"
#include "nvme-passthru-fuzz.h"

#define NPORTS              2
#define ECAM_BASE           0xb0000000ULL
#define ACPI_PCIHP_ADDR     0x0cc0
#define ACPI_PCIHP_SIZE     0x18
#define PCI_EJ_BASE         0x0008
#define PCI_SEL_BASE        0x0010
#define MSIX_CAP            0x40
#define MSG_TIMEOUT_MS      25
#define SETTLE_US           (200 * 1000)

#define POLICY_ARGS \
    "-drive if=pflash,format=raw,readonly=on," \
    "file=/usr/share/OVMF/OVMF_CODE_4M.fd -overcommit mem-lock=on"

enum {
    OP_PORT_CFG_WRITE,
    OP_PORT_CFG_READ,
    OP_DEV_CFG_WRITE,
    OP_DEV_CFG_READ,
    OP_ACPI_WRITE,
    OP_ACPI_READ,
    OP_PLUG,
    OP_UNPLUG,
    OP_SURPRISE,
    OP_HOST_GONE,
    OP_GUEST_ENABLE,
    OP_GUEST_EJECT,
    OP_CLOCK_STEP,
    OP_SET_PROPERTY,
    OP_MMIO_WRITE,
    OP_MMIO_READ,
    OP_QUERY,
    OP_RESET,
    OP_MAX,
};

typedef struct Input {
    const uint8_t *data;
    size_t size;
} Input;

static bool native_mode;
static char *sock_dir;
static bool debug;      /* NVME_PASSTHRU_FUZZ_DEBUG=1: log each operation */

/*
 * A system reset costs more than all other operations of an input
 * together, and the mutator likes repeated bytes: a few an input.
 */
#define MAX_RESETS          2
static int resets;

static const char *const op_names[OP_MAX] = {
    "port-cfg-write", "port-cfg-read", "dev-cfg-write", "dev-cfg-read",
    "acpi-write", "acpi-read", "plug", "unplug", "surprise", "host-gone",
    "guest-enable", "guest-eject", "clock-step", "set-property",
    "mmio-write", "mmio-read", "query", "reset",
};

static uint32_t get(Input *in, int bytes)
{
    uint32_t v = 0;
    int i;

    for (i = 0; i < bytes && in->size; i++) {
        v |= (uint32_t)*in->data << (8 * i);
        in->data++;
        in->size--;
    }
    return v;
}

/* Port n (0-based) is rp<n+1> at 00:0<4+n>.0, secondary bus n + 1 */
static int port_devfn(int n)
{
    return PCI_DEVFN(4 + n, 0);
}

static uint64_t port_window(int n)
{
    return 0xc0000000ULL + n * 0x100000;
}

static uint64_t ecam(int bus, int devfn, int reg)
{
    return ECAM_BASE + ((uint64_t)bus << 20) + (devfn << 12) + (reg & 0xfff);
}

static int access_size(uint32_t v)
{
    static const int sizes[4] = { 1, 2, 4, 4 };

    return sizes[v & 3];
}

static void mem_write(QTestState *s, uint64_t addr, int size, uint32_t val)
{
    switch (size) {
    case 1:
        qtest_writeb(s, addr, val);
        break;
    case 2:
        qtest_writew(s, addr & ~1ULL, val);
        break;
    default:
        qtest_writel(s, addr & ~3ULL, val);
    }
}

static uint32_t mem_read(QTestState *s, uint64_t addr, int size)
{
    switch (size) {
    case 1:
        return qtest_readb(s, addr);
    case 2:
        return qtest_readw(s, addr & ~1ULL);
    default:
        return qtest_readl(s, addr & ~3ULL);
    }
}

static void cfg_write(QTestState *s, int bus, int devfn, int reg, int size,
                      uint32_t val)
{
    mem_write(s, ecam(bus, devfn, reg), size, val);
}

static uint32_t cfg_read(QTestState *s, int bus, int devfn, int reg,
                         int size)
{
    return mem_read(s, ecam(bus, devfn, reg), size);
}

static Object *port_obj(int n)
{
    g_autofree char *path = g_strdup_printf("/machine/peripheral/rp%d",
                                            n + 1);

    return object_resolve_path(path, NULL);
}

static char *dev_id(int n)
{
    return g_strdup_printf("nvme%d", n + 1);
}

static bool dev_present(int n)
{
    g_autofree char *path = g_strdup_printf("/machine/peripheral/nvme%d",
                                            n + 1);

    return object_resolve_path(path, NULL) != NULL;
}

/* What the firmware does: ECAM on, bus numbers, memory windows */
static void firmware_setup(QTestState *s)
{
    int n;

    /* q35 PCIEXBAR: 256 MiB of ECAM at ECAM_BASE */
    qtest_outl(s, 0xcf8, 0x80000064);
    qtest_outl(s, 0xcfc, 0);
    qtest_outl(s, 0xcf8, 0x80000060);
    qtest_outl(s, 0xcfc, ECAM_BASE | 1);

    for (n = 0; n < NPORTS; n++) {
        int fn = port_devfn(n);

        cfg_write(s, 0, fn, PCI_PRIMARY_BUS, 1, 0);
        cfg_write(s, 0, fn, PCI_SECONDARY_BUS, 1, n + 1);
        cfg_write(s, 0, fn, PCI_SUBORDINATE_BUS, 1, n + 1);
        cfg_write(s, 0, fn, PCI_MEMORY_BASE, 2, port_window(n) >> 16);
        cfg_write(s, 0, fn, PCI_MEMORY_LIMIT, 2,
                  (port_window(n) + 0xfffff) >> 16);
        cfg_write(s, 0, fn, PCI_COMMAND, 2,
                  PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    }
}

/*
 * The fuzz target holds a reference to each device it plugged, and drops
 * it once the device has left the tree and RCU has run: the device is
 * then finalized here, on the main thread, between two operations, so
 * that an input does the same each time it runs.  Otherwise the RCU
 * thread finalizes it whenever it gets the BQL, e.g. in the middle of a
 * later system reset (where the vapic's run_on_cpu() lets go of it: that
 * found patches/0024).  NVME_PASSTHRU_FUZZ_RCU_FINALIZE=1 leaves the
 * devices to the RCU thread (make check replays the corpus so as well).
 */
static bool rcu_finalize;
static Object *plugged[NPORTS];

static void finalize_removed(QTestState *s)
{
    bool removed = false;
    int n;

    for (n = 0; n < NPORTS; n++) {
        removed |= plugged[n] && !dev_present(n);
    }
    if (!removed) {
        return;
    }
    drain_call_rcu();
    flush_events(s);
    drain_call_rcu();
    for (n = 0; n < NPORTS; n++) {
        if (plugged[n] && !dev_present(n)) {
            object_unref(plugged[n]);
            plugged[n] = NULL;
        }
    }
    flush_events(s);
}

/*
 * Let the main loop run what the last operation set off.  When the
 * server closed a connection, the client notices in its iothread and the
 * surprise removal follows from a bottom half: wait for it (bounded).
 */
static void settle(QTestState *s)
{
    unsigned closed;
    gint64 deadline;
    int n;

    flush_events(s);
    closed = fake_server_take_closed();
    if (!closed) {
        finalize_removed(s);
        return;
    }
    deadline = g_get_monotonic_time() + SETTLE_US;
    for (;;) {
        bool waiting = false;

        for (n = 0; n < NPORTS; n++) {
            waiting |= (closed & (1u << n)) && dev_present(n);
        }
        if (!waiting || g_get_monotonic_time() > deadline) {
            break;
        }
        g_usleep(100);
        flush_events(s);
    }
    /* Finalize what the removal left to RCU now (see plugged[]) */
    finalize_removed(s);
}

static void plug(QTestState *s, int n)
{
    QDict *args = qdict_new();
    QDict *sock = qdict_new();
    QObject *ret = NULL;
    Error *err = NULL;
    g_autofree char *id = dev_id(n);
    g_autofree char *bus = g_strdup_printf("rp%d", n + 1);

    qdict_put_str(sock, "type", "unix");
    qdict_put_str(sock, "path", fake_server_socket(n));
    qdict_put_str(args, "driver", "vfio-user-nvme");
    qdict_put_str(args, "id", id);
    qdict_put_str(args, "bus", bus);
    qdict_put(args, "socket", sock);
    qdict_put_int(args, "x-msg-timeout", MSG_TIMEOUT_MS);
    qmp_device_add(args, &ret, &err);
    if (debug && err) {
        fprintf(stderr, "nvme-passthru-fuzz: device_add on %s: %s\n", bus,
                error_get_pretty(err));
    }
    error_free(err);
    if (!rcu_finalize && !plugged[n] && dev_present(n)) {
        g_autofree char *path = g_strdup_printf("/machine/peripheral/%s", id);

        plugged[n] = object_ref(object_resolve_path(path, NULL));
    }
    qobject_unref(ret);
    qobject_unref(args);
}

static void unplug(int n)
{
    g_autofree char *id = dev_id(n);
    Error *err = NULL;

    qmp_device_del(id, &err);
    error_free(err);
}

static void set_removal(int n, bool surprise)
{
    Error *err = NULL;

    object_property_set_str(port_obj(n), "removal",
                            surprise ? "surprise" : "orderly", &err);
    error_free(err);
}

/* unplug-timeout-ms or add-timeout-ms */
static void set_timeout(int n, const char *property, uint32_t ms)
{
    Error *err = NULL;

    object_property_set_uint(port_obj(n), property, ms, &err);
    error_free(err);
}

static uint32_t port_bsel(int n)
{
    g_autofree char *path = g_strdup_printf("/machine/peripheral/rp%d/rp%d",
                                            n + 1, n + 1);
    Object *bus = object_resolve_path(path, NULL);

    return bus ? object_property_get_uint(bus, "acpi-pcihp-bsel", NULL) : 0;
}

static int port_exp_cap(QTestState *s, int n)
{
    int pos = cfg_read(s, 0, port_devfn(n), PCI_CAPABILITY_LIST, 1);
    int i;

    for (i = 0; i < 48 && pos >= 0x40; i++) {
        if (cfg_read(s, 0, port_devfn(n), pos, 1) == PCI_CAP_ID_EXP) {
            return pos;
        }
        pos = cfg_read(s, 0, port_devfn(n), pos + 1, 1) & ~3;
    }
    return 0;
}

static void slot_power(QTestState *s, int n, bool on)
{
    int exp = port_exp_cap(s, n);
    uint16_t ctl;

    if (!exp) {
        return;
    }
    ctl = cfg_read(s, 0, port_devfn(n), exp + PCI_EXP_SLTCTL, 2);
    ctl &= ~(PCI_EXP_SLTCTL_PCC | PCI_EXP_SLTCTL_PIC);
    ctl |= on ? PCI_EXP_SLTCTL_PWR_ON | PCI_EXP_SLTCTL_PWR_IND_ON
              : PCI_EXP_SLTCTL_PWR_OFF | PCI_EXP_SLTCTL_PWR_IND_OFF;
    cfg_write(s, 0, port_devfn(n), exp + PCI_EXP_SLTCTL, 2, ctl);
}

/* What a guest driver does with a hot-added controller */
static void guest_enable(QTestState *s, int n)
{
    int bus = n + 1;

    if (native_mode) {
        int exp = port_exp_cap(s, n);

        if (exp) {
            uint16_t sta = cfg_read(s, 0, port_devfn(n),
                                    exp + PCI_EXP_SLTSTA, 2);

            cfg_write(s, 0, port_devfn(n), exp + PCI_EXP_SLTSTA, 2,
                      sta & (PCI_EXP_SLTSTA_ABP | PCI_EXP_SLTSTA_PDC));
        }
        slot_power(s, n, true);
    }
    cfg_write(s, bus, 0, PCI_BASE_ADDRESS_0, 4, port_window(n));
    cfg_write(s, bus, 0, PCI_COMMAND, 2,
              PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    if (cfg_read(s, bus, 0, MSIX_CAP, 1) == PCI_CAP_ID_MSIX) {
        uint16_t flags = cfg_read(s, bus, 0, MSIX_CAP + PCI_MSIX_FLAGS, 2);

        cfg_write(s, bus, 0, MSIX_CAP + PCI_MSIX_FLAGS, 2,
                  flags | PCI_MSIX_FLAGS_ENABLE);
    }
}

/* What the guest does when asked to let the device go */
static void guest_eject(QTestState *s, int n)
{
    if (native_mode) {
        slot_power(s, n, false);
    } else {
        qtest_outl(s, ACPI_PCIHP_ADDR + PCI_SEL_BASE, port_bsel(n));
        qtest_outl(s, ACPI_PCIHP_ADDR + PCI_EJ_BASE, 1);
    }
}

static void io_write(QTestState *s, uint16_t addr, int size, uint32_t val)
{
    switch (size) {
    case 1:
        qtest_outb(s, addr, val);
        break;
    case 2:
        qtest_outw(s, addr, val);
        break;
    default:
        qtest_outl(s, addr, val);
    }
}

static void io_read(QTestState *s, uint16_t addr, int size)
{
    switch (size) {
    case 1:
        qtest_inb(s, addr);
        break;
    case 2:
        qtest_inw(s, addr);
        break;
    default:
        qtest_inl(s, addr);
    }
}

static void run_op(QTestState *s, Input *in)
{
    uint8_t op = get(in, 1) % OP_MAX;
    uint8_t arg = get(in, 1);
    int n = arg & 1;
    int size = access_size(arg >> 1);
    uint16_t reg;
    uint32_t val;

    switch (op) {
    case OP_PORT_CFG_WRITE:
        reg = get(in, 2);
        val = get(in, 4);
        cfg_write(s, 0, port_devfn(n), reg, size, val);
        break;
    case OP_PORT_CFG_READ:
        cfg_read(s, 0, port_devfn(n), get(in, 2), size);
        break;
    case OP_DEV_CFG_WRITE:
        reg = get(in, 2);
        val = get(in, 4);
        cfg_write(s, n + 1, 0, reg, size, val);
        break;
    case OP_DEV_CFG_READ:
        cfg_read(s, n + 1, 0, get(in, 2), size);
        break;
    case OP_ACPI_WRITE:
        reg = get(in, 1) % ACPI_PCIHP_SIZE;
        val = get(in, 4);
        io_write(s, ACPI_PCIHP_ADDR + reg, size, val);
        break;
    case OP_ACPI_READ:
        io_read(s, ACPI_PCIHP_ADDR + get(in, 1) % ACPI_PCIHP_SIZE, size);
        break;
    case OP_PLUG:
        plug(s, n);
        break;
    case OP_UNPLUG:
        set_removal(n, false);
        unplug(n);
        break;
    case OP_SURPRISE:
        set_removal(n, true);
        unplug(n);
        break;
    case OP_HOST_GONE:
        fake_server_close(n);
        break;
    case OP_GUEST_ENABLE:
        guest_enable(s, n);
        break;
    case OP_GUEST_EJECT:
        guest_eject(s, n);
        break;
    case OP_CLOCK_STEP:
        /* at least 1 ms: qtest refuses a step that does not advance */
        qtest_clock_step(s, ((int64_t)get(in, 2) + 1) * 1000 * 1000);
        break;
    case OP_SET_PROPERTY:
        if ((arg & 0xc0) == 0xc0) {
            set_timeout(n, "add-timeout-ms", get(in, 2));
        } else if (arg & 0x80) {
            set_timeout(n, "unplug-timeout-ms", get(in, 2));
        } else {
            /* removal=surprise escalates an orderly removal */
            set_removal(n, arg & 0x40);
        }
        break;
    case OP_MMIO_WRITE:
        reg = get(in, 2);
        val = get(in, 4);
        mem_write(s, port_window(n) + (reg & 0x3fff), size, val);
        break;
    case OP_MMIO_READ:
        mem_read(s, port_window(n) + (get(in, 2) & 0x3fff), size);
        break;
    case OP_QUERY:
        qapi_free_PassthruHotplugInfo(qmp_query_passthru_hotplug(NULL));
        break;
    case OP_RESET:
        if (resets++ < MAX_RESETS) {
            fuzz_reset(s);
            firmware_setup(s);
        }
        break;
    }
    settle(s);
    if (debug) {
        fprintf(stderr, "nvme-passthru-fuzz: %-14s rp%d size %d: "
                "nvme1 %s, nvme2 %s, %" PRIu64 " server messages\n",
                op_names[op], n + 1, size, dev_present(0) ? "on" : "off",
                dev_present(1) ? "on" : "off", fake_server_messages());
    }
}

/* Back to the state every input starts from */
static void cleanup(QTestState *s)
{
    gint64 deadline;
    int pass, n;

    fake_server_reset(NULL, 0);
    for (pass = 0; pass < NPORTS + 1; pass++) {
        for (n = 0; n < NPORTS; n++) {
            if (dev_present(n)) {
                set_removal(n, true);
                settle(s);
            }
            if (dev_present(n)) {
                unplug(n);
                settle(s);
            }
        }
    }
    for (n = 0; n < NPORTS; n++) {
        if (dev_present(n)) {
            fprintf(stderr, "nvme-passthru-fuzz: nvme%d cannot be removed "
                    "from rp%d\n", n + 1, n + 1);
            abort();
        }
        set_removal(n, false);
        set_timeout(n, "unplug-timeout-ms", 0);
        set_timeout(n, "add-timeout-ms", 30000);
    }
    drain_call_rcu();
    flush_events(s);
    deadline = g_get_monotonic_time() + G_USEC_PER_SEC;
    while (fake_server_connections() &&
           g_get_monotonic_time() < deadline) {
        g_usleep(100);
        flush_events(s);
    }
    fake_server_take_closed();
    fuzz_reset(s);
}

static void hotplug_fuzz(QTestState *s, const unsigned char *data,
                         size_t size)
{
    Input in = { data, size };

    resets = 0;
    fake_server_reset(NULL, 0);
    firmware_setup(s);
    while (in.size) {
        run_op(s, &in);
    }
    cleanup(s);
}

/*
 * [n][n rules of 8 bytes: cmd, nth, action, off, val (LE)][operations]
 * The rules apply from the hot-add of rp1 on; see FakeServerRule.
 */
static void server_fuzz(QTestState *s, const unsigned char *data,
                        size_t size)
{
    Input in = { data, size };
    FakeServerRule rules[FAKE_SERVER_MAX_RULES];
    int i, n = get(&in, 1) % (FAKE_SERVER_MAX_RULES + 1);

    for (i = 0; i < n; i++) {
        rules[i].cmd = get(&in, 1) % 16;
        rules[i].nth = get(&in, 1);
        rules[i].action = get(&in, 1) % FAKE_ACTION_MAX;
        rules[i].off = get(&in, 1);
        rules[i].val = get(&in, 4);
    }
    resets = 0;
    fake_server_reset(rules, n);
    firmware_setup(s);
    plug(s, 0);
    settle(s);
    guest_enable(s, 0);
    settle(s);
    while (in.size) {
        run_op(s, &in);
    }
    cleanup(s);
}

static GString *cmdline(bool native)
{
    GString *cmd = g_string_new(
        TARGET_NAME " -machine q35,accel=qtest,memory-backend=m0 "
        "-nodefaults -display none "
        "-object memory-backend-memfd,id=m0,size=256M,share=on "
        POLICY_ARGS);
    int n;

    for (n = 0; n < NPORTS; n++) {
        g_string_append_printf(cmd, " -device pcie-hotplug-passthru,"
                               "id=rp%d,bus=pcie.0,chassis=%d,addr=0x%x",
                               n + 1, n + 1, 4 + n);
    }
    if (native) {
        g_string_append(cmd, " -global "
                        "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off");
    }
    /* More options, e.g. "-trace vfio_user_*" to study a reproducer */
    if (getenv("NVME_PASSTHRU_FUZZ_ARGS")) {
        g_string_append_printf(cmd, " %s", getenv("NVME_PASSTHRU_FUZZ_ARGS"));
    }
    return cmd;
}

static GString *acpi_cmdline(FuzzTarget *t)
{
    return cmdline(false);
}

static GString *native_cmdline(FuzzTarget *t)
{
    native_mode = true;
    return cmdline(true);
}

static void pre_fuzz(QTestState *s)
{
    GError *err = NULL;
    sigset_t alarm;

    /*
     * QEMU's main loop blocks SIGALRM and reads it from a signalfd
     * (qemu_signal_init()), so libFuzzer's -timeout, which counts on
     * SIGALRM, would only act once the main loop runs again: never, for
     * an input that hangs QEMU.  Take the signal in this thread.
     */
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &alarm, NULL);

    debug = getenv("NVME_PASSTHRU_FUZZ_DEBUG");
    rcu_finalize = getenv("NVME_PASSTHRU_FUZZ_RCU_FINALIZE");
    sock_dir = g_dir_make_tmp("nvme-passthru-fuzz-XXXXXX", &err);
    g_assert_no_error(err);
    fake_server_start(sock_dir);
}

/* The VM's memory need not be locked (nvme-passthru-fuzz.h) */
int __wrap_mlockall(int flags)
{
    return 0;
}

static void register_nvme_passthru_fuzz_targets(void)
{
    fuzz_add_target(&(FuzzTarget){
        .name = "nvme-passthru-hotplug-acpi",
        .description = "Guest config/ACPI hotplug register writes "
                       "interleaved with plug, orderly and surprise "
                       "removal of vfio-user-nvme (ACPI PCI hotplug)",
        .get_init_cmdline = acpi_cmdline,
        .pre_fuzz = pre_fuzz,
        .fuzz = hotplug_fuzz,
    });
    fuzz_add_target(&(FuzzTarget){
        .name = "nvme-passthru-hotplug-native",
        .description = "The same with native PCIe hotplug (Slot Control)",
        .get_init_cmdline = native_cmdline,
        .pre_fuzz = pre_fuzz,
        .fuzz = hotplug_fuzz,
    });
    fuzz_add_target(&(FuzzTarget){
        .name = "vfio-user-nvme-server",
        .description = "The vfio-user client against a misbehaving server: "
                       "wrong sizes, bad region/irq info, closes, requests",
        .get_init_cmdline = acpi_cmdline,
        .pre_fuzz = pre_fuzz,
        .fuzz = server_fuzz,
    });
}

fuzz_target_init(register_nvme_passthru_fuzz_targets);
