/*
 * virt-vmx-import: a VMware VM's .vmx file, passthrough devices
 * included, as a libvirt domain for NVMe passthrough hotplug
 *
 * virt-v2v drops pciPassthruN.*; this carries each passthrough NVMe
 * over as a managed <hostdev> on a passthrough port, checked against
 * this host, and the rest of the VM as far as it maps (see
 * docs/system/devices/nvme-passthru-vmx-import.rst).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmx-import.h"

/* Exit status: NPH_DONE, NPH_FAILED, NPH_REFUSED, and */
#define EXIT_PARTIAL 3          /* written without a refused device */

static const char *progname = "virt-vmx-import";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [OPTIONS] FILE.vmx\n"
"\n"
"Write the libvirt domain of a VMware VM for NVMe passthrough hotplug:\n"
"each pciPassthruN a host NVMe on a passthrough port, checked on this\n"
"host, and the VM's name, memory (locked), vCPUs, UEFI firmware, disks\n"
"and NICs.  What is not carried over is listed on stderr, with its line.\n"
"\n"
"Options:\n"
"  -o, --output FILE   write the domain to FILE (default: stdout)\n"
"      --uefi          a BIOS VM becomes UEFI (else it is refused): the\n"
"                      guest must have a UEFI boot loader\n"
"      --spare-ports N empty passthrough ports for hot-adds (0-32; default\n"
"                      2 with fixedPassthruHotPlugEnabled, else 0)\n"
"      --name NAME     the domain's name (default: displayName)\n"
"      --network NAME  the libvirt network of the NICs (default: default)\n"
"      --emulator PATH the fork's qemu-system-x86_64 (default:\n"
"                      /usr/local/bin/qemu-system-x86_64)\n"
"      --type TYPE     the domain type: kvm (default) or qemu (TCG, for a\n"
"                      host without KVM, slow; tests)\n"
"  -r, --root DIR      read the host's sys/ under DIR instead of / (tests;\n"
"                      also NVME_PASSTHRU_HOST_ROOT)\n"
"  -h, --help          this text\n"
"\n"
"Exit status: 0 written, 1 failed (cannot read or write a file), 2\n"
"refused (bad arguments, an error in the file, a device missing or not\n"
"free on this host, a rule of passthrough: nothing written), 3 written\n"
"without a passthrough device that is not an NVMe controller.\n",
            progname);
}

static int write_output(const VmxDomain *d, const char *source,
                        const char *path)
{
    FILE *f = path ? fopen(path, "w") : stdout;
    bool ok;

    if (!f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", progname, path,
                strerror(errno));
        return NPH_FAILED;
    }
    ok = vmx_write_domain(d, source, f);
    ok &= fflush(f) == 0;
    if (path) {
        ok &= fclose(f) == 0;
        if (!ok) {
            unlink(path);
        }
    }
    if (!ok) {
        fprintf(stderr, "%s: cannot write the domain to %s\n", progname,
                path ? path : "stdout");
        return NPH_FAILED;
    }
    return NPH_DONE;
}

static int convert(const char *file, const VmxOptions *o, const char *out)
{
    char why[1024];
    Vmx *v = vmx_read(file, why, sizeof(why));
    VmxDomain d;
    int rc, errors, refused;

    if (!v) {
        fprintf(stderr, "%s: %s\n", progname, why);
        return NPH_FAILED;
    }
    vmx_map(v, o, &d);
    errors = vmx_count(v, VMX_ERROR);
    refused = vmx_count(v, VMX_REFUSED);
    /* with errors, only what stops the conversion */
    vmx_print(v, errors ? VMX_REFUSED : VMX_NOTE, progname, stderr);
    if (errors) {
        fprintf(stderr, "%s: %s: %d error%s: no domain written\n",
                progname, file, errors, errors == 1 ? "" : "s");
        rc = NPH_REFUSED;
    } else {
        rc = write_output(&d, file, out);
        if (rc == NPH_DONE) {
            fprintf(stderr, "%s: domain '%s': %d passthrough NVMe "
                    "device%s, %d spare passthrough port%s%s\n", progname,
                    d.name, d.n_passthru, d.n_passthru == 1 ? "" : "s",
                    d.spare_ports, d.spare_ports == 1 ? "" : "s",
                    refused ? "; refused devices left out" : "");
            rc = refused ? EXIT_PARTIAL : NPH_DONE;
        }
    }
    vmx_domain_free(&d);
    vmx_free(v);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_UEFI = 256, OPT_SPARE, OPT_NAME, OPT_NETWORK, OPT_EMULATOR,
           OPT_TYPE };
    static const struct option longopts[] = {
        { "output", required_argument, NULL, 'o' },
        { "uefi", no_argument, NULL, OPT_UEFI },
        { "spare-ports", required_argument, NULL, OPT_SPARE },
        { "name", required_argument, NULL, OPT_NAME },
        { "network", required_argument, NULL, OPT_NETWORK },
        { "emulator", required_argument, NULL, OPT_EMULATOR },
        { "type", required_argument, NULL, OPT_TYPE },
        { "root", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    VmxOptions o = {
        .spare_ports = -1,
        .emulator = "/usr/local/bin/qemu-system-x86_64",
        .type = "kvm",
    };
    const char *root = getenv("NVME_PASSTHRU_HOST_ROOT");
    const char *out = NULL;
    char why[512];
    uint64_t num;
    int c;

    while ((c = getopt_long(argc, argv, "o:r:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case OPT_UEFI:
            o.uefi = true;
            break;
        case OPT_SPARE:
            if (!nph_parse_u64(optarg, 10, &num) ||
                num > VMX_MAX_PASSTHRU) {
                fprintf(stderr, "%s: --spare-ports wants 0 to %d, not "
                        "'%s'\n", progname, VMX_MAX_PASSTHRU, optarg);
                return NPH_REFUSED;
            }
            o.spare_ports = num;
            break;
        case OPT_NAME:
            o.name = optarg;
            break;
        case OPT_NETWORK:
            o.network = optarg;
            break;
        case OPT_EMULATOR:
            o.emulator = optarg;
            break;
        case OPT_TYPE:
            if (strcmp(optarg, "kvm") && strcmp(optarg, "qemu")) {
                fprintf(stderr, "%s: --type wants kvm or qemu, not '%s'\n",
                        progname, optarg);
                return NPH_REFUSED;
            }
            o.type = optarg;
            break;
        case 'r':
            root = optarg;
            break;
        case 'h':
            usage(stdout);
            return NPH_DONE;
        default:
            usage(stderr);
            return NPH_REFUSED;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return NPH_REFUSED;
    }
    if ((o.name && !o.name[0]) || (o.network && !o.network[0]) ||
        !o.emulator[0]) {
        fprintf(stderr, "%s: --name, --network and --emulator want a "
                "value\n", progname);
        return NPH_REFUSED;
    }
    if (!nph_use_root(root, why, sizeof(why))) {
        fprintf(stderr, "%s: %s\n", progname, why);
        return NPH_REFUSED;
    }
    return convert(argv[optind], &o, out);
}
