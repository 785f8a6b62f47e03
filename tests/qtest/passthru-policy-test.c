/*
 * QTest testcase for the VM-wide rules of NVMe passthrough hotplug
 *
 * A VM with a pcie-hotplug-passthru port must use UEFI firmware in
 * pflash, lock all its memory, have no CPU or memory hotplug, at most
 * 128 vCPUs, no vIOMMU, at most 32 ports, and be a q35 machine.  A VM
 * that breaks a rule does not start, and says which rule and what to
 * change; while it runs, device_add of a CPU, a memory device or a
 * vIOMMU is refused and the VM keeps running unchanged.  (Migration and
 * snapshots with a device attached, and the 33rd device, are covered in
 * pcie-hotplug-passthru-test.c, which runs vfio-user servers.)
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#define OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"
#define PFLASH "-drive if=pflash,format=raw,readonly=on,file=" OVMF_CODE
#define MEMLOCK "-overcommit mem-lock=on"
#define PORT "-device pcie-hotplug-passthru,id=rp1,bus=pcie.0,chassis=1"
#define GOOD_VM "-machine q35 -m 128M " PFLASH " " MEMLOCK " " PORT

typedef struct StartupCase {
    const char *path;
    const char *args;       /* the whole command line but the binary */
    const char *error;      /* what QEMU says on stderr */
} StartupCase;

static const StartupCase startup_cases[] = {
    { "uefi/default-bios",
      "-machine q35 -m 128M " MEMLOCK " " PORT,
      "passthrough hotplug needs UEFI firmware in pflash (e.g. OVMF), not "
      "the BIOS image 'bios-256k.bin': drop -bios and use -drive if=pflash,"
      "format=raw,readonly=on,file=OVMF_CODE.fd (and a VARS pflash)" },
    { "uefi/bios-option",
      "-machine q35 -m 128M -bios bios.bin " MEMLOCK " " PORT,
      "passthrough hotplug needs UEFI firmware in pflash (e.g. OVMF), not "
      "the BIOS image 'bios.bin': drop -bios and use -drive if=pflash,"
      "format=raw,readonly=on,file=OVMF_CODE.fd (and a VARS pflash)" },
    { "mem-lock/off",
      "-machine q35 -m 128M " PFLASH " " PORT,
      "passthrough hotplug needs all guest memory locked: use "
      "-overcommit mem-lock=on" },
    { "mem-lock/on-fault",
      "-machine q35 -m 128M " PFLASH " -overcommit mem-lock=on-fault " PORT,
      "passthrough hotplug needs all guest memory locked (mem-lock=on-fault "
      "locks a page only once it is used): use -overcommit mem-lock=on" },
    { "cpu-hotplug/maxcpus",
      GOOD_VM " -smp 2,maxcpus=4",
      "passthrough hotplug does not allow CPU hotplug: -smp maxcpus (4) "
      "must equal cpus (2)" },
    { "vcpus/129",
      GOOD_VM " -smp 129",
      "passthrough hotplug allows at most 128 vCPUs, not 129: lower -smp" },
    { "memory-hotplug/slots-maxmem",
      "-machine q35 -m 128M,slots=2,maxmem=1G " PFLASH " " MEMLOCK " " PORT,
      "passthrough hotplug does not allow memory hotplug: drop slots= and "
      "maxmem= from -m" },
    { "memory-hotplug/maxmem",
      "-machine q35 -m 128M,maxmem=1G " PFLASH " " MEMLOCK " " PORT,
      "passthrough hotplug does not allow memory hotplug: drop slots= and "
      "maxmem= from -m" },
    { "viommu/intel-iommu",
      GOOD_VM " -device intel-iommu",
      "passthrough hotplug does not allow a vIOMMU visible to the guest: "
      "remove the intel-iommu device" },
    { "viommu/virtio-iommu-pci",
      GOOD_VM " -device virtio-iommu-pci",
      "passthrough hotplug does not allow a vIOMMU visible to the guest: "
      "remove the virtio-iommu-pci device" },
    { "machine/microvm",
      "-machine microvm,pcie=on,acpi=on -m 128M " MEMLOCK
      " -device pcie-hotplug-passthru,id=rp1,chassis=1",
      "passthrough hotplug needs the q35 machine type, not 'microvm': use "
      "-machine q35" },
};

/*
 * Run QEMU with @args; a VM that starts is told to quit at once over
 * QMP.  Returns the exit status, *@err gets stderr.
 */
static int run_qemu(const char *args, char **err)
{
    g_autofree char *cmd = g_strdup_printf(
        "printf '%%s' '{\"execute\":\"qmp_capabilities\"}"
        "{\"execute\":\"quit\"}' | exec %s -nodefaults -display none "
        "-accel qtest -qmp stdio %s", qtest_qemu_binary(NULL), args);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    g_autoptr(GError) gerr = NULL;
    g_autofree char *out = NULL;
    int status;

    g_test_message("%s", cmd);
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
                               NULL, NULL, &out, err, &status, &gerr));
    g_assert_no_error(gerr);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A VM that breaks the rule does not start, and says why */
static void test_startup_refused(const void *data)
{
    const StartupCase *c = data;
    g_autofree char *err = NULL;
    g_autofree char *want = g_strdup_printf("%s\n", c->error);

    g_assert_cmpint(run_qemu(c->args, &err), ==, 1);
    g_assert_true(g_str_has_suffix(err, want));
}

/* A VM that meets every rule starts */
static void test_startup_all_rules_met(void)
{
    g_autofree char *err = NULL;

    g_assert_cmpint(run_qemu(GOOD_VM " -smp 4", &err), ==, 0);
    g_assert_cmpstr(err, ==, "");
}

/* 32 ports are fine, a 33rd is not */
static void test_startup_ports(void)
{
    g_autoptr(GString) args = g_string_new("-machine q35 -m 128M "
                                           PFLASH " " MEMLOCK);
    g_autofree char *err = NULL;
    int i;

    for (i = 1; i <= 32; i++) {
        g_string_append_printf(args, " -device pcie-hotplug-passthru,"
                               "id=rp%d,bus=pcie.0,chassis=%d,addr=%d.%d,"
                               "multifunction=on", i, i, 8 + (i - 1) / 8,
                               (i - 1) % 8);
    }
    g_assert_cmpint(run_qemu(args->str, &err), ==, 0);

    g_string_append(args, " -device pcie-hotplug-passthru,id=rp33,"
                    "bus=pcie.0,chassis=33,addr=0x18");
    g_free(err);
    g_assert_cmpint(run_qemu(args->str, &err), ==, 1);
    g_assert_true(g_str_has_suffix(err, "passthrough hotplug allows at "
                                   "most 32 pcie-hotplug-passthru ports, "
                                   "not 33\n"));
}

typedef struct RuntimeCase {
    const char *path;
    const char *device;     /* device_add arguments */
    const char *error;
} RuntimeCase;

static const RuntimeCase runtime_cases[] = {
    { "cpu",
      "{'driver': 'qemu64-x86_64-cpu', 'id': 'cpu1', 'socket-id': 1, "
      "'core-id': 0, 'thread-id': 0}",
      "passthrough hotplug does not allow CPU hotplug: cannot add "
      "'qemu64-x86_64-cpu'" },
    { "memory/pc-dimm",
      "{'driver': 'pc-dimm', 'id': 'dimm1', 'memdev': 'spare'}",
      "passthrough hotplug does not allow memory hotplug: cannot add "
      "'pc-dimm'" },
    { "memory/nvdimm",
      "{'driver': 'nvdimm', 'id': 'nv1', 'memdev': 'spare'}",
      "passthrough hotplug does not allow memory hotplug: cannot add "
      "'nvdimm'" },
    { "memory/virtio-mem-pci",
      "{'driver': 'virtio-mem-pci', 'id': 'vm1', 'memdev': 'spare'}",
      "passthrough hotplug does not allow memory hotplug: cannot add "
      "'virtio-mem-pci'" },
    { "memory/virtio-pmem-pci",
      "{'driver': 'virtio-pmem-pci', 'id': 'vp1', 'memdev': 'spare'}",
      "passthrough hotplug does not allow memory hotplug: cannot add "
      "'virtio-pmem-pci'" },
    { "viommu/intel-iommu",
      "{'driver': 'intel-iommu', 'id': 'iommu1'}",
      "passthrough hotplug does not allow a vIOMMU visible to the guest: "
      "cannot add 'intel-iommu'" },
    { "viommu/virtio-iommu-pci",
      "{'driver': 'virtio-iommu-pci', 'id': 'iommu1'}",
      "passthrough hotplug does not allow a vIOMMU visible to the guest: "
      "cannot add 'virtio-iommu-pci'" },
};

static int count_cpus(QTestState *qts)
{
    g_autoptr(QDict) resp = qtest_qmp(qts,
                                      "{'execute': 'query-cpus-fast'}");

    return qlist_size(qdict_get_qlist(resp, "return"));
}

/* device_add that would break a rule is refused; nothing changes */
static void test_runtime_refused(const void *data)
{
    const RuntimeCase *c = data;
    QTestState *qts = qtest_init(
        "-nodefaults " GOOD_VM " -smp 2 "
        "-object memory-backend-ram,id=spare,size=64M");
    g_autofree char *cmd = g_strdup_printf(
        "{'execute': 'device_add', 'arguments': %s}", c->device);
    g_autoptr(QDict) err = NULL;
    g_autoptr(QDict) status = NULL;

    err = qtest_qmp_assert_failure_ref(qts, cmd, NULL);
    g_assert_cmpstr(qdict_get_try_str(err, "class"), ==, "GenericError");
    g_assert_cmpstr(qdict_get_try_str(err, "desc"), ==, c->error);

    /* The VM keeps running, as it was */
    g_assert_cmpint(count_cpus(qts), ==, 2);
    status = qtest_qmp_assert_success_ref(qts,
                                          "{'execute': 'query-status'}");
    g_assert_cmpstr(qdict_get_try_str(status, "status"), ==, "running");
    qtest_quit(qts);
}

/* Without a passthrough port there is no policy */
static void test_no_port_no_policy(void)
{
    g_autofree char *err = NULL;

    g_assert_cmpint(run_qemu("-machine q35 -m 128M,slots=2,maxmem=1G "
                             "-smp 2,maxcpus=4", &err), ==, 0);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);

    for (i = 0; i < ARRAY_SIZE(startup_cases); i++) {
        g_autofree char *path = g_strdup_printf(
            "/passthru-policy/startup/refused/%s", startup_cases[i].path);
        qtest_add_data_func(path, &startup_cases[i], test_startup_refused);
    }
    qtest_add_func("/passthru-policy/startup/all-rules-met",
                   test_startup_all_rules_met);
    qtest_add_func("/passthru-policy/startup/at-most-32-ports",
                   test_startup_ports);
    qtest_add_func("/passthru-policy/startup/no-port-no-policy",
                   test_no_port_no_policy);
    for (i = 0; i < ARRAY_SIZE(runtime_cases); i++) {
        g_autofree char *path = g_strdup_printf(
            "/passthru-policy/runtime/refused/%s", runtime_cases[i].path);
        qtest_add_data_func(path, &runtime_cases[i], test_runtime_refused);
    }
    return g_test_run();
}
