/*
 * nvme-passthru-host: the host side of NVMe passthrough hotplug
 *
 * vSphere's host flow on Linux: list the host's NVMe controllers (the
 * PCI device table), toggle passthrough on one (vfio-pci and back,
 * refused for a device the host uses), check that the host can pass
 * devices through at all, and place a newly inserted drive into a
 * running VM (watch).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "nvme-host.h"
#include "watch.h"

static const char *progname = "nvme-passthru-host";

static struct {
    bool json;
    double timeout_s;
    bool persist;
    const char *vm;
    long pid;
    const char *policy;
    const char *uevents;
} opt = {
    .timeout_s = 10,
};

static json_object *jstr(const char *s)
{
    return s && s[0] ? json_object_new_string(s) : NULL;
}

static void print_json(json_object *o)
{
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
}

/* ---------------------------------------------------------------- */
/* list */

static const char *passthrough_state(const NphDevice *d)
{
    if (nph_is_vfio(d)) {
        return "on";
    }
    return !strcmp(d->driver_override, "vfio-pci") ? "pending" : "off";
}

static json_object *device_json(const NphDevice *d, const NphUse *use,
                                const char *refusal)
{
    json_object *o = json_object_new_object(), *a;
    char buf[16];
    int i;

    json_object_object_add(o, "bdf", json_object_new_string(d->bdf));
    snprintf(buf, sizeof(buf), "%04x", d->vendor);
    json_object_object_add(o, "vendor", json_object_new_string(buf));
    snprintf(buf, sizeof(buf), "%04x", d->device);
    json_object_object_add(o, "device", json_object_new_string(buf));
    json_object_object_add(o, "controller", jstr(d->controller));
    json_object_object_add(o, "model", jstr(d->model));
    json_object_object_add(o, "serial", jstr(d->serial));
    json_object_object_add(o, "firmware", jstr(d->firmware));
    json_object_object_add(o, "driver", jstr(d->driver));
    json_object_object_add(o, "driver-override", jstr(d->driver_override));
    json_object_object_add(o, "iommu-group", d->iommu_group < 0 ? NULL :
                           json_object_new_int(d->iommu_group));
    a = json_object_new_array();
    for (i = 0; i < d->n_members; i++) {
        json_object *m = json_object_new_object();

        json_object_object_add(m, "bdf",
                               json_object_new_string(d->members[i].bdf));
        json_object_object_add(m, "driver", jstr(d->members[i].driver));
        json_object_array_add(a, m);
    }
    json_object_object_add(o, "group-members", a);
    json_object_object_add(o, "slot", jstr(d->slot));
    json_object_object_add(o, "passthrough",
                           json_object_new_string(passthrough_state(d)));
    json_object_object_add(o, "persistent",
                           json_object_new_boolean(nph_persisted(d->bdf)));
    json_object_object_add(o, "in-use", json_object_new_boolean(use->n > 0));
    a = json_object_new_array();
    for (i = 0; i < use->n; i++) {
        json_object_array_add(a, json_object_new_string(use->why[i]));
    }
    json_object_object_add(o, "in-use-reasons", a);
    json_object_object_add(o, "passable",
                           json_object_new_boolean(!refusal));
    json_object_object_add(o, "refusal", jstr(refusal));
    return o;
}

static void device_print(const NphDevice *d, const NphUse *use,
                         const char *refusal)
{
    char group[128];
    int i;

    printf("%s  %04x:%04x  %s  %s\n", d->bdf, d->vendor, d->device,
           d->controller[0] ? d->controller : "-",
           d->model[0] ? d->model : "(model unknown: not on the nvme driver)");
    if (d->serial[0] || d->firmware[0]) {
        printf("    serial %s, firmware %s\n", d->serial[0] ? d->serial : "?",
               d->firmware[0] ? d->firmware : "?");
    }
    if (d->iommu_group < 0) {
        snprintf(group, sizeof(group), "no IOMMU group");
    } else {
        snprintf(group, sizeof(group), "IOMMU group %d (%s)", d->iommu_group,
                 d->n_members ? "shared" : "alone");
    }
    printf("    driver %s, %s, slot %s\n", d->driver[0] ? d->driver : "none",
           group, d->slot[0] ? d->slot : "-");
    for (i = 0; i < d->n_members; i++) {
        printf("    group member %s (driver %s)\n", d->members[i].bdf,
               d->members[i].driver[0] ? d->members[i].driver : "none");
    }
    printf("    passthrough %s%s\n", passthrough_state(d),
           nph_persisted(d->bdf) ? " (kept across reboots)" : "");
    if (use->n) {
        for (i = 0; i < use->n; i++) {
            printf("    host uses it: %s\n", use->why[i]);
        }
    } else if (nph_is_vfio(d)) {
        printf("    free: passed through\n");
    } else if (refusal) {
        printf("    free, but cannot be passed through: %s\n", refusal);
    } else {
        printf("    free: ready for passthrough\n");
    }
}

static int cmd_list(void)
{
    char (*bdfs)[NPH_BDF_LEN];
    int n = nph_list_nvme(&bdfs), i;
    json_object *all = json_object_new_array();

    for (i = 0; i < n; i++) {
        NphDevice d;
        NphUse use;
        char msg[2048];
        const char *refusal = NULL;

        if (!nph_device_read(bdfs[i], &d)) {
            continue;           /* gone since the listing */
        }
        nph_nvme_in_use(d.bdf, &use);
        if (!nph_is_vfio(&d) && !use.n &&
            nph_can_pass(&d, msg, sizeof(msg)) != NPH_DONE) {
            refusal = msg;
        }
        if (opt.json) {
            json_object_array_add(all, device_json(&d, &use, refusal));
        } else {
            device_print(&d, &use, refusal);
        }
    }
    if (opt.json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "devices", all);
        print_json(o);
    } else {
        json_object_put(all);
        if (!n) {
            printf("no NVMe controller on this host\n");
        }
    }
    free(bdfs);
    return 0;
}

/* ---------------------------------------------------------------- */
/* enable, disable */

static const char *result_name(NphResult r)
{
    return r == NPH_DONE ? "done" : r == NPH_REFUSED ? "refused" : "failed";
}

static int print_result(const char *op, const char *bdf, NphResult r,
                        const char *msg)
{
    if (opt.json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "operation", json_object_new_string(op));
        json_object_object_add(o, "device", json_object_new_string(bdf));
        json_object_object_add(o, "result",
                               json_object_new_string(result_name(r)));
        json_object_object_add(o, "message", json_object_new_string(msg));
        print_json(o);
    } else if (r == NPH_DONE) {
        printf("%s\n", msg);
    } else {
        fprintf(stderr, "%s: %s %s: %s: %s\n", progname, op, bdf,
                result_name(r), msg);
    }
    return r;
}

static int cmd_bind(const char *op, const char *arg)
{
    char bdf[NPH_BDF_LEN], msg[4096], self[PATH_MAX];
    NphBindOpts o = { .timeout_s = opt.timeout_s, .persist = opt.persist };
    ssize_t n;
    NphResult r;

    if (!nph_parse_bdf(arg, bdf, sizeof(bdf))) {
        snprintf(msg, sizeof(msg), "'%s' is not a PCI address (DDDD:BB:SS.F)",
                 arg);
        return print_result(op, arg, NPH_REFUSED, msg);
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    o.self = n > 0 ? self : progname;
    r = !strcmp(op, "enable") ? nph_enable(bdf, &o, msg, sizeof(msg)) :
        nph_disable(bdf, &o, msg, sizeof(msg));
    return print_result(op, bdf, r, msg);
}

/* ---------------------------------------------------------------- */
/* check */

static const char *level_name(NphLevel l)
{
    return l == NPH_OK ? "ok" : l == NPH_WARN ? "warn" : "fail";
}

static void on_check(const NphCheck *c, void *opaque)
{
    json_object *arr = opaque;

    if (opt.json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "name", json_object_new_string(c->name));
        json_object_object_add(o, "result",
                               json_object_new_string(level_name(c->level)));
        json_object_object_add(o, "detail", json_object_new_string(c->detail));
        json_object_object_add(o, "fix", jstr(c->fix));
        json_object_array_add(arr, o);
        return;
    }
    printf("%-5s %-20s %s\n", c->level == NPH_OK ? "ok" :
           c->level == NPH_WARN ? "WARN" : "FAIL", c->name, c->detail);
    if (c->fix[0]) {
        printf("      %-20s fix: %s\n", "", c->fix);
    }
}

static int cmd_check(void)
{
    char err[PATH_MAX + 128], path[PATH_MAX];
    json_object *arr = json_object_new_array();
    long pid = opt.pid;
    int failed;

    if (opt.vm) {
        pid = nph_vm_pid(opt.vm, err, sizeof(err));
        if (pid < 0) {
            fprintf(stderr, "%s: check: refused: %s\n", progname, err);
            json_object_put(arr);
            return NPH_REFUSED;
        }
    }
    if (pid > 0) {
        nph_path(path, sizeof(path), "/proc/%ld", pid);
        if (access(path, F_OK) < 0) {
            fprintf(stderr, "%s: check: refused: no process %ld\n", progname,
                    pid);
            json_object_put(arr);
            return NPH_REFUSED;
        }
    }
    failed = nph_check_host(pid, on_check, arr);
    if (opt.json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "checks", arr);
        json_object_object_add(o, "failed", json_object_new_int(failed));
        print_json(o);
    } else {
        json_object_put(arr);
        if (failed) {
            printf("%d check%s failed: fix %s before passing an NVMe "
                   "through\n", failed, failed > 1 ? "s" : "",
                   failed > 1 ? "them" : "it");
        } else {
            printf("the host can pass NVMe controllers through\n");
        }
    }
    return failed ? NPH_FAILED : NPH_DONE;
}

/* ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [OPTIONS] COMMAND [ARGS]\n"
"\n"
"The host side of NVMe passthrough: the host's NVMe controllers, handing\n"
"one to vfio-pci for a VM and back, and whether the host can do it.\n"
"\n"
"Commands:\n"
"  list                every NVMe controller: identity, driver, IOMMU group\n"
"                      and its members, slot, passthrough state, and free\n"
"                      or why the host uses it\n"
"  enable BDF          passthrough on: bind BDF to vfio-pci (refused when\n"
"                      it is not NVMe, the host uses it, or its IOMMU\n"
"                      group is missing, not viable or shared)\n"
"  disable BDF         passthrough off: give BDF back to the nvme driver\n"
"                      (refused while a VM has it open)\n"
"  check               IOMMU, interrupt remapping, VFIO modules and nodes,\n"
"                      each NVMe's IOMMU group; with --vm or --pid also the\n"
"                      QEMU process's locked-memory limit and node access\n"
"  watch --policy FILE place newly inserted NVMe drives that FILE allows\n"
"                      into a running VM (netlink uevents; see the docs)\n"
"\n"
"Options:\n"
"  -j, --json          print JSON for machines: one object (watch: one\n"
"                      object a line, a step each)\n"
"  -r, --root DIR      read sys/, dev/, proc/, run/ and etc/ under DIR\n"
"                      instead of / (tests; also NVME_PASSTHRU_HOST_ROOT)\n"
"  -t, --timeout SEC   wait at most SEC for the kernel (default 10)\n"
"      --persist       enable/disable: also at every boot (a udev rule in\n"
"                      /etc/udev/rules.d/60-nvme-passthru-host.rules)\n"
"      --vm NAME       check: the QEMU of libvirt domain NAME\n"
"      --pid PID       check: the QEMU process PID\n"
"      --policy FILE   watch: the allow-list and the VM\n"
"      --uevents FILE  watch: read uevents from FILE (a file or a fifo;\n"
"                      KEY=VALUE lines, a blank line after each event)\n"
"                      instead of the kernel's netlink socket (test, debug)\n"
"  -h, --help          this text\n"
"\n"
"Exit status: 0 done (check: every check passed), 1 failed (the kernel\n"
"did not do it, a check failed; watch --uevents: an add did not\n"
"complete), 2 refused (bad arguments, or a rule of passthrough: nothing\n"
"was changed).\n", progname);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "root", required_argument, NULL, 'r' },
        { "timeout", required_argument, NULL, 't' },
        { "persist", no_argument, NULL, 'P' },
        { "vm", required_argument, NULL, 'V' },
        { "pid", required_argument, NULL, 'p' },
        { "policy", required_argument, NULL, 'f' },
        { "uevents", required_argument, NULL, 'u' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *root = getenv("NVME_PASSTHRU_HOST_ROOT");
    const char *cmd;
    uint64_t num;
    char *end, why[512];
    int c;

    while ((c = getopt_long(argc, argv, "jr:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            opt.json = true;
            break;
        case 'r':
            root = optarg;
            break;
        case 't':
            opt.timeout_s = strtod(optarg, &end);
            if (*end || end == optarg || opt.timeout_s < 0 ||
                opt.timeout_s > 3600) {
                fprintf(stderr, "%s: --timeout wants seconds (0-3600), not "
                        "'%s'\n", progname, optarg);
                return NPH_REFUSED;
            }
            break;
        case 'P':
            opt.persist = true;
            break;
        case 'V':
            opt.vm = optarg;
            break;
        case 'p':
            if (!nph_parse_u64(optarg, 10, &num) || !num || num > INT32_MAX) {
                fprintf(stderr, "%s: --pid wants a pid, not '%s'\n",
                        progname, optarg);
                return NPH_REFUSED;
            }
            opt.pid = num;
            break;
        case 'f':
            opt.policy = optarg;
            break;
        case 'u':
            opt.uevents = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return NPH_REFUSED;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return NPH_REFUSED;
    }
    cmd = argv[optind];
    argc -= optind + 1;
    argv += optind + 1;
    if (!nph_use_root(root, why, sizeof(why))) {
        fprintf(stderr, "%s: %s\n", progname, why);
        return NPH_REFUSED;
    }
    if (!strcmp(cmd, "list") && argc == 0) {
        return cmd_list();
    }
    if ((!strcmp(cmd, "enable") || !strcmp(cmd, "disable")) && argc == 1) {
        return cmd_bind(cmd, argv[0]);
    }
    if (!strcmp(cmd, "check") && argc == 0 && !(opt.vm && opt.pid)) {
        return cmd_check();
    }
    if (!strcmp(cmd, "watch") && argc == 0) {
        if (!opt.policy) {
            fprintf(stderr, "%s: watch needs --policy FILE\n", progname);
            return NPH_REFUSED;
        }
        return nph_watch(opt.policy, opt.uevents, opt.json, opt.timeout_s);
    }
    fprintf(stderr, "%s: unknown command or wrong arguments: %s (see "
            "--help)\n", progname, cmd);
    return NPH_REFUSED;
}
