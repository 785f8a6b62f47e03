/*
 * virt-vmx-import: the libvirt domain XML of a mapped .vmx
 *
 * Laid out as docs/config/nvme-passthru-hotplug.xml: q35 and OVMF
 * without secure boot, all memory locked (shared memfd), a fixed number
 * of vCPUs; ordinary pcie-root-port controllers first (the NICs and the
 * USB controller on them with explicit addresses, one left free for
 * what libvirt hot-plugs itself), then the passthrough ports ua-pt1,
 * ua-pt2, ... (pcie-root-port turned into pcie-hotplug-passthru by
 * <qemu:override>, never hotplug='off'), each VM's NVMe a managed
 * <hostdev> on its port (docs/config/nvme-passthru-hostdev.xml).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libxml/xmlwriter.h>

#include "vmx-import.h"

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
#define PASSTHRU_PORT "pcie-hotplug-passthru"
#define FIRST_PORT_SLOT 2       /* the root ports' slots on pcie.0 */

typedef struct Writer {
    xmlTextWriterPtr w;
    bool ok;
} Writer;

/*
 * <NAME ATTR="VALUE" ...>TEXT</NAME>: the varargs are attribute name and
 * value pairs up to a NULL; TEXT NULL for an empty element; OPEN keeps
 * it open for children (close()).
 */
static void elem(Writer *x, bool open, const char *name, const char *text,
                 ...)
{
    const char *attr, *val;
    va_list ap;

    x->ok &= xmlTextWriterStartElement(x->w, BAD_CAST name) >= 0;
    va_start(ap, text);
    while ((attr = va_arg(ap, const char *))) {
        val = va_arg(ap, const char *);
        x->ok &= xmlTextWriterWriteAttribute(x->w, BAD_CAST attr,
                                             BAD_CAST val) >= 0;
    }
    va_end(ap);
    if (text) {
        x->ok &= xmlTextWriterWriteString(x->w, BAD_CAST text) >= 0;
    }
    if (!open) {
        x->ok &= xmlTextWriterEndElement(x->w) >= 0;
    }
}

static void close_elem(Writer *x)
{
    x->ok &= xmlTextWriterEndElement(x->w) >= 0;
}

static void NPH_PRINTF_LIKE(2, 3) comment(Writer *x, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    x->ok &= xmlTextWriterWriteComment(x->w, BAD_CAST buf) >= 0;
}

/* <address type='pci'> of slot 0 on the root port INDEX */
static void port_address(Writer *x, int index)
{
    char bus[8];

    snprintf(bus, sizeof(bus), "0x%02x", index);
    elem(x, false, "address", NULL, "type", "pci", "domain", "0x0000",
         "bus", bus, "slot", "0x00", "function", "0x0", NULL);
}

/* Root port INDEX (1, 2, ...): function INDEX-1 of slot 2, 3, ... */
static void root_port(Writer *x, int index, int total, const char *alias)
{
    char idx[8], chassis[8], port[8], slot[8], fn[8];
    int s = FIRST_PORT_SLOT + (index - 1) / 8, f = (index - 1) % 8;
    bool multi = f == 0 && index < total;

    snprintf(idx, sizeof(idx), "%d", index);
    snprintf(chassis, sizeof(chassis), "%d", index);
    snprintf(port, sizeof(port), "0x%02x", 0x10 + index - 1);
    snprintf(slot, sizeof(slot), "0x%02x", s);
    snprintf(fn, sizeof(fn), "0x%x", f);
    elem(x, true, "controller", NULL, "type", "pci", "index", idx,
         "model", "pcie-root-port", NULL);
    elem(x, false, "target", NULL, "chassis", chassis, "port", port, NULL);
    if (alias) {
        elem(x, false, "alias", NULL, "name", alias, NULL);
    }
    elem(x, false, "address", NULL, "type", "pci", "domain", "0x0000",
         "bus", "0x00", "slot", slot, "function", fn,
         multi ? "multifunction" : NULL, "on", NULL);
    close_elem(x);
}

static void write_head(Writer *x, const VmxDomain *d)
{
    char buf[32];

    elem(x, false, "name", d->name, NULL);
    if (d->uuid[0]) {
        elem(x, false, "uuid", d->uuid, NULL);
    }
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)d->memory_mib);
    elem(x, false, "memory", buf, "unit", "MiB", NULL);
    elem(x, true, "memoryBacking", NULL, NULL);
    elem(x, false, "source", NULL, "type", "memfd", NULL);
    elem(x, false, "access", NULL, "mode", "shared", NULL);
    elem(x, false, "locked", NULL, NULL);
    close_elem(x);
    snprintf(buf, sizeof(buf), "%u", d->vcpus);
    elem(x, false, "vcpu", buf, "placement", "static", NULL);
    elem(x, true, "os", NULL, "firmware", "efi", NULL);
    elem(x, false, "type", "hvm", "arch", "x86_64", "machine", "q35", NULL);
    elem(x, true, "firmware", NULL, NULL);
    elem(x, false, "feature", NULL, "enabled", "no", "name", "secure-boot",
         NULL);
    elem(x, false, "feature", NULL, "enabled", "no", "name",
         "enrolled-keys", NULL);
    close_elem(x);
    elem(x, false, "boot", NULL, "dev", d->n_disks ? "hd" : "network",
         NULL);
    close_elem(x);
    elem(x, true, "features", NULL, NULL);
    elem(x, false, "acpi", NULL, NULL);
    elem(x, false, "apic", NULL, NULL);
    close_elem(x);
    if (d->cores_per_socket) {
        char sockets[16], cores[16];

        snprintf(sockets, sizeof(sockets), "%u",
                 d->vcpus / d->cores_per_socket);
        snprintf(cores, sizeof(cores), "%u", d->cores_per_socket);
        elem(x, true, "cpu", NULL, NULL);
        elem(x, false, "topology", NULL, "sockets", sockets, "dies", "1",
             "cores", cores, "threads", "1", NULL);
        close_elem(x);
    }
    elem(x, false, "on_poweroff", "destroy", NULL);
    elem(x, false, "on_reboot", "restart", NULL);
    elem(x, false, "on_crash", "destroy", NULL);
}

static void write_disks(Writer *x, const VmxDomain *d)
{
    char dev[8];
    int i;

    for (i = 0; i < d->n_disks; i++) {
        const VmxDisk *k = &d->disks[i];

        snprintf(dev, sizeof(dev), "sd%c", 'a' + i);
        comment(x, " %s ", k->key);
        elem(x, true, "disk", NULL, "type", "file", "device",
             k->cdrom ? "cdrom" : "disk", NULL);
        elem(x, false, "driver", NULL, "name", "qemu", "type",
             k->file ? k->format : "raw", NULL);
        if (k->file) {
            elem(x, false, "source", NULL, "file", k->file, NULL);
        }
        elem(x, false, "target", NULL, "dev", dev, "bus", "sata", NULL);
        if (k->cdrom) {
            elem(x, false, "readonly", NULL, NULL);
        }
        close_elem(x);
    }
}

/* The ordinary ports: the NICs', the USB controller's, one free; 3 or more */
static int ordinary_ports(const VmxDomain *d)
{
    return d->n_nics + 2 > 3 ? d->n_nics + 2 : 3;
}

/* The ordinary ports 1 to N, and the devices on them */
static int write_ordinary(Writer *x, const VmxDomain *d, int total)
{
    int ports = ordinary_ports(d);
    int i;

    comment(x, " Ordinary root ports first, with explicit addresses for "
            "the devices on them: libvirt puts a device without an "
            "address on the first free port in index order ");
    for (i = 1; i <= ports; i++) {
        root_port(x, i, total, NULL);
    }
    elem(x, true, "controller", NULL, "type", "usb", "index", "0",
         "model", "qemu-xhci", NULL);
    port_address(x, d->n_nics + 1);
    close_elem(x);
    for (i = 0; i < d->n_nics; i++) {
        comment(x, " %s ", d->nics[i].key);
        elem(x, true, "interface", NULL, "type", "network", NULL);
        if (d->nics[i].mac[0]) {
            elem(x, false, "mac", NULL, "address", d->nics[i].mac, NULL);
        }
        elem(x, false, "source", NULL, "network", d->network, NULL);
        elem(x, false, "model", NULL, "type", "e1000e", NULL);
        port_address(x, i + 1);
        close_elem(x);
    }
    return ports;
}

static void write_passthru(Writer *x, const VmxDomain *d, int first,
                           int total)
{
    char alias[32], dom[8], bus[8], slot[8], fn[8];
    unsigned vd, vb, vs, vf;
    int i;

    comment(x, " The passthrough ports, hot-pluggable (no hotplug='off'): "
            "the <address> of a <hostdev> names its port by the index ");
    for (i = 0; i < d->n_passthru + d->spare_ports; i++) {
        snprintf(alias, sizeof(alias), "ua-pt%d", i + 1);
        root_port(x, first + i, total, alias);
    }
    for (i = 0; i < d->n_passthru; i++) {
        const VmxPassthru *p = &d->passthru[i];

        if (p->slot_number >= 0) {
            comment(x, " pciPassthru%d: %s, VMware slot %ld, on ua-pt%d ",
                    p->n, p->bdf, p->slot_number, i + 1);
        } else {
            comment(x, " pciPassthru%d: %s, on ua-pt%d ", p->n, p->bdf,
                    i + 1);
        }
        sscanf(p->bdf, "%x:%x:%x.%x", &vd, &vb, &vs, &vf);
        snprintf(dom, sizeof(dom), "0x%04x", vd);
        snprintf(bus, sizeof(bus), "0x%02x", vb);
        snprintf(slot, sizeof(slot), "0x%02x", vs);
        snprintf(fn, sizeof(fn), "0x%x", vf);
        elem(x, true, "hostdev", NULL, "mode", "subsystem", "type", "pci",
             "managed", "yes", NULL);
        elem(x, true, "source", NULL, NULL);
        elem(x, false, "address", NULL, "domain", dom, "bus", bus,
             "slot", slot, "function", fn, NULL);
        close_elem(x);
        snprintf(alias, sizeof(alias), "ua-nvme%d", p->n);
        elem(x, false, "alias", NULL, "name", alias, NULL);
        port_address(x, first + i);
        close_elem(x);
    }
}

static void write_overrides(Writer *x, const VmxDomain *d)
{
    char alias[32];
    int i;

    if (!d->n_passthru && !d->spare_ports) {
        return;
    }
    elem(x, true, "qemu:override", NULL, NULL);
    for (i = 0; i < d->n_passthru + d->spare_ports; i++) {
        snprintf(alias, sizeof(alias), "ua-pt%d", i + 1);
        elem(x, true, "qemu:device", NULL, "alias", alias, NULL);
        elem(x, true, "qemu:frontend", NULL, NULL);
        elem(x, false, "qemu:property", NULL, "name", "driver", "type",
             "string", "value", PASSTHRU_PORT, NULL);
        close_elem(x);
        close_elem(x);
    }
    close_elem(x);
}

bool vmx_write_domain(const VmxDomain *d, const char *source, FILE *out)
{
    xmlBufferPtr buf = xmlBufferCreate();
    Writer x = { buf ? xmlNewTextWriterMemory(buf, 0) : NULL, true };
    int ordinary, total;
    bool ok;

    if (!x.w) {
        xmlBufferFree(buf);
        return false;
    }
    total = ordinary_ports(d) + d->n_passthru + d->spare_ports;
    x.ok &= xmlTextWriterSetIndent(x.w, 1) >= 0;
    x.ok &= xmlTextWriterSetIndentString(x.w, BAD_CAST "  ") >= 0;
    comment(&x, " Converted from %s by virt-vmx-import: see "
            "docs/system/devices/nvme-passthru-vmx-import.rst.  Set "
            "<emulator> and the disks' <source> before defining it ",
            source);
    elem(&x, true, "domain", NULL, "type", d->type, "xmlns:qemu", QEMU_NS,
         NULL);
    write_head(&x, d);
    elem(&x, true, "devices", NULL, NULL);
    elem(&x, false, "emulator", d->emulator, NULL);
    write_disks(&x, d);
    elem(&x, false, "controller", NULL, "type", "pci", "index", "0",
         "model", "pcie-root", NULL);
    ordinary = write_ordinary(&x, d, total);
    write_passthru(&x, d, ordinary + 1, total);
    elem(&x, true, "serial", NULL, "type", "pty", NULL);
    elem(&x, false, "target", NULL, "port", "0", NULL);
    close_elem(&x);
    elem(&x, true, "console", NULL, "type", "pty", NULL);
    elem(&x, false, "target", NULL, "type", "serial", "port", "0", NULL);
    close_elem(&x);
    elem(&x, false, "memballoon", NULL, "model", "none", NULL);
    close_elem(&x);
    write_overrides(&x, d);
    close_elem(&x);
    x.ok &= xmlTextWriterFlush(x.w) >= 0;
    xmlFreeTextWriter(x.w);
    ok = x.ok && fwrite(xmlBufferContent(buf), 1, xmlBufferLength(buf),
                        out) == (size_t)xmlBufferLength(buf);
    xmlBufferFree(buf);
    return ok;
}
