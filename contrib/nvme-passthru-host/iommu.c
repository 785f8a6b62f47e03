/*
 * Can this host pass an NVMe controller through?  The checks of the
 * ESX VMDirectPath troubleshooting note, for Linux: the IOMMU is in the
 * hardware and on, interrupt remapping, the VFIO modules and nodes,
 * each NVMe controller's IOMMU group; and for a QEMU process, its
 * locked-memory limit and its access to the VFIO nodes.  Every failure
 * comes with what to do about it.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "nvme-host.h"

#define CAP_IPC_LOCK_BIT 14

typedef struct Checker {
    NphCheckFn fn;
    void *opaque;
    int failed;
} Checker;

static void NPH_PRINTF_LIKE(5, 6) report(Checker *k, const char *name,
                                     NphLevel level, const char *fix,
                                     const char *fmt, ...)
{
    NphCheck c = { .name = name, .level = level };
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c.detail, sizeof(c.detail), fmt, ap);
    va_end(ap);
    snprintf(c.fix, sizeof(c.fix), "%s", fix ? fix : "");
    k->failed += level == NPH_FAIL;
    k->fn(&c, k->opaque);
}

static bool exists(const char *fmt, const char *arg)
{
    char path[PATH_MAX];

    nph_path(path, sizeof(path), fmt, arg);
    return access(path, F_OK) == 0;
}

/* The entries of /sys/class/iommu, "dmar0 dmar1" */
static int iommu_units(char *buf, size_t size)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *e;
    int n = 0;
    size_t len = 0;

    buf[0] = '\0';
    nph_path(path, sizeof(path), "/sys/class/iommu");
    d = opendir(path);
    while (d && (e = readdir(d))) {
        if (e->d_name[0] != '.' && len < size) {
            len += snprintf(buf + len, size - len, "%s%s", n ? " " : "",
                            e->d_name);
            n++;
        }
    }
    if (d) {
        closedir(d);
    }
    return n;
}

static void check_iommu(Checker *k)
{
    bool dmar = exists("/sys/firmware/acpi/tables/%s", "DMAR");
    bool ivrs = exists("/sys/firmware/acpi/tables/%s", "IVRS");
    const char *kind = dmar ? "Intel VT-d" : ivrs ? "AMD-Vi" : NULL;
    char units[256], cmdline[1024] = "", path[PATH_MAX];
    int n = iommu_units(units, sizeof(units));

    nph_path(path, sizeof(path), "/proc/cmdline");
    nph_read_line(path, cmdline, sizeof(cmdline));
    if (kind) {
        report(k, "iommu-hardware", NPH_OK, NULL, "%s (ACPI %s table)",
               kind, dmar ? "DMAR" : "IVRS");
    } else if (n) {
        report(k, "iommu-hardware", NPH_OK, NULL, "no DMAR or IVRS table, "
               "but the kernel has IOMMU units");
    } else {
        report(k, "iommu-hardware", NPH_FAIL,
               "enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware "
               "setup (see the server's hardware manual); without an "
               "IOMMU nothing can be passed through",
               "the firmware reports no IOMMU (no DMAR or IVRS ACPI "
               "table)");
    }
    if (n) {
        report(k, "iommu", NPH_OK, NULL, "on: %s", units);
        return;
    }
    report(k, "iommu", NPH_FAIL,
           dmar ? "add intel_iommu=on (and iommu=pt for host DMA speed) "
           "to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, "
           "reboot" :
           ivrs ? "AMD's IOMMU is on by default: remove amd_iommu=off or "
           "iommu=off from the kernel command line, update-grub, reboot" :
           "enable the IOMMU in the firmware first, then boot with "
           "intel_iommu=on (Intel)",
           "off: /sys/class/iommu is empty (kernel command line: %s)",
           cmdline[0] ? cmdline : "unknown");
}

static void check_intremap(Checker *k)
{
    char path[PATH_MAX], line[1024], val[16] = "";
    FILE *f;
    bool ir = false;

    nph_path(path, sizeof(path), "/proc/interrupts");
    f = fopen(path, "r");
    while (f && !ir && fgets(line, sizeof(line), f)) {
        ir = strstr(line, "IR-PCI-MSI") || strstr(line, "IR-IO-APIC");
    }
    if (f) {
        fclose(f);
    }
    if (ir) {
        report(k, "interrupt-remapping", NPH_OK, NULL,
               "on (IR- interrupt chips in /proc/interrupts)");
        return;
    }
    nph_path(path, sizeof(path),
             "/sys/module/vfio_iommu_type1/parameters/"
             "allow_unsafe_interrupts");
    nph_read_line(path, val, sizeof(val));
    if (val[0] == 'Y' || val[0] == '1') {
        report(k, "interrupt-remapping", NPH_WARN,
               "enable interrupt remapping (x2APIC, VT-d/AMD-Vi) in the "
               "firmware and drop allow_unsafe_interrupts",
               "off; vfio_iommu_type1.allow_unsafe_interrupts=Y accepts "
               "devices anyway (a guest could inject host interrupts)");
        return;
    }
    report(k, "interrupt-remapping", NPH_FAIL,
           "enable interrupt remapping (x2APIC) in the firmware and do not "
           "boot with intremap=off; only on hardware without it: "
           "vfio_iommu_type1.allow_unsafe_interrupts=1 (unsafe)",
           "off (no IR- interrupt chips in /proc/interrupts): VFIO refuses "
           "to assign devices");
}

static void check_vfio(Checker *k)
{
    static const char *const mods[] = { "vfio", "vfio_pci",
                                        "vfio_iommu_type1" };
    char missing[128] = "";
    size_t i;

    for (i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
        if (!exists("/sys/module/%s", mods[i])) {
            strncat(missing, " ", sizeof(missing) - strlen(missing) - 1);
            strncat(missing, mods[i], sizeof(missing) - strlen(missing) - 1);
        }
    }
    if (!missing[0] && exists("/sys/bus/pci/drivers/%s", "vfio-pci")) {
        report(k, "vfio-modules", NPH_OK, NULL,
               "vfio, vfio_pci, vfio_iommu_type1 loaded");
    } else {
        report(k, "vfio-modules", NPH_FAIL,
               "modprobe vfio-pci (enable does it too); at every boot: "
               "echo vfio-pci > /etc/modules-load.d/vfio-pci.conf",
               "not loaded:%s", missing[0] ? missing : " vfio-pci driver");
    }
    if (exists("/dev/vfio/%s", "vfio")) {
        report(k, "vfio-node", NPH_OK, NULL, "/dev/vfio/vfio exists");
    } else {
        report(k, "vfio-node", NPH_FAIL,
               "modprobe vfio-pci creates it; QEMU opens it for every "
               "VFIO device", "/dev/vfio/vfio does not exist");
    }
}

static void check_devices(Checker *k)
{
    char (*bdfs)[NPH_BDF_LEN];
    char name[64], msg[2048], fix[256];
    int n = nph_list_nvme(&bdfs), i;

    if (!n) {
        report(k, "nvme", NPH_WARN, NULL, "no NVMe controller on this host");
    }
    for (i = 0; i < n; i++) {
        NphDevice d;
        NphUse use;

        snprintf(name, sizeof(name), "nvme %s", bdfs[i]);
        if (!nph_device_read(bdfs[i], &d)) {
            continue;           /* gone since the listing */
        }
        if (nph_is_vfio(&d)) {
            nph_path(msg, sizeof(msg), "/dev/vfio/%d", d.iommu_group);
            if (d.iommu_group >= 0 && access(msg, F_OK) == 0) {
                report(k, name, NPH_OK, NULL, "passed through: vfio-pci, "
                       "/dev/vfio/%d", d.iommu_group);
            } else {
                report(k, name, NPH_FAIL, "check that udev runs; "
                       "'nvme-passthru-host disable' then 'enable' again",
                       "bound to vfio-pci, but /dev/vfio/%d does not exist",
                       d.iommu_group);
            }
            continue;
        }
        if (nph_nvme_in_use(d.bdf, &use)) {
            char why[NPH_MAX_REASONS * NPH_REASON_LEN];

            nph_use_join(&use, why, sizeof(why));
            report(k, name, NPH_OK, NULL, "used by the host (%s): not "
                   "passed through", why);
            continue;
        }
        if (nph_can_pass(&d, msg, sizeof(msg)) != NPH_DONE) {
            snprintf(fix, sizeof(fix), "%s",
                     d.iommu_group < 0 ? "turn the IOMMU on (above)" :
                     "move the drive to a slot whose root port isolates "
                     "it (ACS), or leave it to the host");
            report(k, name, NPH_FAIL, fix, "%s", msg);
            continue;
        }
        report(k, name, NPH_OK, NULL, "free, alone in IOMMU group %d: "
               "ready for 'nvme-passthru-host enable %s'", d.iommu_group,
               d.bdf);
    }
    free(bdfs);
}

/* "Key:\tvalue" of /proc/PID/status */
static bool proc_status(long pid, const char *key, char *val, size_t size)
{
    char path[PATH_MAX], line[256];
    size_t n = strlen(key);
    FILE *f;
    bool found = false;

    nph_path(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, key, n) && line[n] == ':') {
            snprintf(val, size, "%s", line + n + 1 +
                     strspn(line + n + 1, " \t"));
            val[strcspn(val, "\n")] = '\0';
            found = true;
        }
    }
    if (f) {
        fclose(f);
    }
    return found;
}

/* QEMU's -m in bytes (MiB when no suffix, "size=" accepted); 0 unknown */
static uint64_t qemu_ram(long pid)
{
    char path[PATH_MAX], buf[65536];
    FILE *f;
    size_t len, off;
    const char *arg = NULL;

    nph_path(path, sizeof(path), "/proc/%ld/cmdline", pid);
    f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    for (off = 0; off < len; off += strlen(buf + off) + 1) {
        if (!strcmp(buf + off, "-m") && off + 3 < len) {
            arg = buf + off + 3;
        }
    }
    if (arg) {
        const char *size = strstr(arg, "size=");
        char *end;
        double v = strtod(size ? size + 5 : arg, &end);
        uint64_t unit = 1 << 20;

        switch (toupper((unsigned char)*end)) {
        case 'K':
            unit = 1 << 10;
            break;
        case 'G':
            unit = 1ULL << 30;
            break;
        case 'T':
            unit = 1ULL << 40;
            break;
        case 'B':
            unit = 1;
            break;
        }
        return v > 0 ? (uint64_t)(v * unit) : 0;
    }
    return 128ULL << 20;        /* QEMU's default */
}

static const char *mib(uint64_t bytes, char *buf, size_t size)
{
    snprintf(buf, size, "%" PRIu64 " MiB", bytes >> 20);
    return buf;
}

static void check_memlock(Checker *k, long pid)
{
    char path[PATH_MAX], line[256], soft[64], caps[64], fix[512];
    char a[32], b[32];
    uint64_t limit = 0, eff, ram, need;
    bool found = false;
    FILE *f;

    if (proc_status(pid, "CapEff", caps, sizeof(caps)) &&
        nph_parse_u64(caps, 16, &eff) && (eff >> CAP_IPC_LOCK_BIT) & 1) {
        report(k, "memlock", NPH_OK, NULL, "QEMU (pid %ld) has "
               "CAP_IPC_LOCK: no limit applies", pid);
        return;
    }
    nph_path(path, sizeof(path), "/proc/%ld/limits", pid);
    f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "Max locked memory", 17) &&
            sscanf(line + 17, "%63s", soft) == 1) {
            found = true;
            if (!strcmp(soft, "unlimited")) {
                limit = UINT64_MAX;
            } else if (!nph_parse_u64(soft, 10, &limit)) {
                found = false;
            }
        }
    }
    if (f) {
        fclose(f);
    }
    if (!found) {
        report(k, "memlock", NPH_FAIL, "run the check as root",
               "cannot read the locked-memory limit of QEMU (pid %ld)", pid);
        return;
    }
    if (limit == UINT64_MAX) {
        report(k, "memlock", NPH_OK, NULL, "QEMU (pid %ld) may lock "
               "unlimited memory", pid);
        return;
    }
    /* libvirt's rule for VFIO without a vIOMMU: guest RAM + 1 GiB */
    ram = qemu_ram(pid);
    need = ram + (1ULL << 30);
    if (limit >= need) {
        report(k, "memlock", NPH_OK, NULL, "QEMU (pid %ld) may lock %s, "
               "guest RAM + 1 GiB is %s", pid, mib(limit, a, sizeof(a)),
               mib(need, b, sizeof(b)));
        return;
    }
    snprintf(fix, sizeof(fix), "raise it: prlimit --pid %ld --memlock=%"
             PRIu64 " (now), LimitMEMLOCK=infinity in QEMU's systemd unit, "
             "or libvirt's <memoryBacking><locked/></memoryBacking>", pid,
             need);
    report(k, "memlock", NPH_FAIL, fix, "QEMU (pid %ld) may lock %s, but "
           "VFIO pins all guest RAM: it needs %s (guest RAM + 1 GiB)", pid,
           mib(limit, a, sizeof(a)), mib(need, b, sizeof(b)));
}

/* Can QEMU (user UID) open NODE? */
static void check_node(Checker *k, long pid, unsigned uid, const char *node)
{
    char path[PATH_MAX], fix[512];
    struct stat st;

    nph_path(path, sizeof(path), "%s", node);
    if (stat(path, &st) < 0) {
        report(k, "qemu-access", NPH_FAIL, "bind the device to vfio-pci "
               "('nvme-passthru-host enable BDF')", "%s does not exist",
               node);
        return;
    }
    if (uid == 0 || (st.st_uid == uid && (st.st_mode & 0600) == 0600) ||
        (st.st_mode & 0006) == 0006) {
        report(k, "qemu-access", NPH_OK, NULL, "QEMU (uid %u) can open %s",
               uid, node);
        return;
    }
    snprintf(fix, sizeof(fix), "chown %u %s (libvirt does this for a "
             "managed <hostdev>)", uid, node);
    report(k, "qemu-access", NPH_FAIL, fix, "QEMU runs as uid %u and "
           "cannot open %s (owner %u, mode %03o)", uid, node,
           (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
}

static void check_qemu(Checker *k, long pid)
{
    char val[128], node[64];
    char (*bdfs)[NPH_BDF_LEN];
    unsigned uid = 0;
    int n, i;

    check_memlock(k, pid);
    if (!proc_status(pid, "Uid", val, sizeof(val)) ||
        sscanf(val, "%*u %u", &uid) != 1) {
        report(k, "qemu-access", NPH_FAIL, "run the check as root",
               "cannot read the user of QEMU (pid %ld)", pid);
        return;
    }
    check_node(k, pid, uid, "/dev/vfio/vfio");
    n = nph_list_nvme(&bdfs);
    for (i = 0; i < n; i++) {
        NphDevice d;

        if (nph_device_read(bdfs[i], &d) && nph_is_vfio(&d) &&
            d.iommu_group >= 0) {
            snprintf(node, sizeof(node), "/dev/vfio/%d", d.iommu_group);
            check_node(k, pid, uid, node);
        }
    }
    free(bdfs);
}

int nph_check_host(long pid, NphCheckFn fn, void *opaque)
{
    Checker k = { .fn = fn, .opaque = opaque };

    check_iommu(&k);
    check_intremap(&k);
    check_vfio(&k);
    check_devices(&k);
    if (pid > 0) {
        check_qemu(&k, pid);
    }
    return k.failed;
}

long nph_vm_pid(const char *name, char *err, size_t errsize)
{
    char path[PATH_MAX], line[64];
    uint64_t pid;

    nph_path(path, sizeof(path), "/run/libvirt/qemu/%s.pid", name);
    if (!nph_read_line(path, line, sizeof(line)) ||
        !nph_parse_u64(line, 10, &pid) || !pid || pid > INT32_MAX) {
        snprintf(err, errsize, "no running libvirt domain '%s' (cannot read "
                 "%s): pass --pid", name, path);
        return -1;
    }
    return pid;
}
