/*
 * virt-nvme-hotplug: what the domain's live XML says about its ports
 *
 * Read with virDomainGetXMLDesc, which, unlike a QEMU monitor command,
 * does not taint the domain: which controllers are passthrough ports
 * (a pcie-root-port with a user alias and a <qemu:override> of its
 * driver), their indexes (the bus of a <hostdev>'s <address>), and
 * which devices libvirt knows.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "domain-xml.h"

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
#define PASSTHRU_PORT "pcie-hotplug-passthru"

struct DomainXml {
    xmlDocPtr doc;
    xmlXPathContextPtr ctx;
};

DomainXml *domxml_get(virDomainPtr dom, char *why, size_t size)
{
    char *text = virDomainGetXMLDesc(dom, 0);
    DomainXml *x;

    if (!text) {
        const char *msg = virGetLastErrorMessage();

        snprintf(why, size, "cannot read the domain's XML: %s",
                 msg ? msg : "unknown libvirt error");
        return NULL;
    }
    x = calloc(1, sizeof(*x));
    if (!x) {
        free(text);
        snprintf(why, size, "out of memory");
        return NULL;
    }
    x->doc = xmlReadMemory(text, strlen(text), "domain.xml", NULL,
                           XML_PARSE_NONET | XML_PARSE_NOERROR |
                           XML_PARSE_NOWARNING);
    free(text);
    x->ctx = x->doc ? xmlXPathNewContext(x->doc) : NULL;
    if (!x->ctx || xmlXPathRegisterNs(x->ctx, BAD_CAST "qemu",
                                      BAD_CAST QEMU_NS) < 0) {
        snprintf(why, size, "cannot parse the domain's XML");
        domxml_free(x);
        return NULL;
    }
    return x;
}

void domxml_free(DomainXml *x)
{
    if (!x) {
        return;
    }
    if (x->ctx) {
        xmlXPathFreeContext(x->ctx);
    }
    if (x->doc) {
        xmlFreeDoc(x->doc);
    }
    free(x);
}

/*
 * The string value of the XPath expression FMT (a printf format whose
 * arguments are aliases), into BUF; false when it is empty.  Aliases
 * with a quote are never in the domain (libvirt refuses them) and
 * would end the XPath string: none is looked up.
 */
static bool __attribute__((format(printf, 4, 5)))
xpath_string(DomainXml *x, char *buf, size_t size, const char *fmt, ...)
{
    char expr[1024];
    xmlXPathObjectPtr obj;
    xmlChar *val = NULL;
    va_list ap;
    bool found = false;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(expr, sizeof(expr), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(expr)) {
        return false;
    }
    obj = xmlXPathEvalExpression(BAD_CAST expr, x->ctx);
    if (obj) {
        val = xmlXPathCastToString(obj);
        xmlXPathFreeObject(obj);
    }
    if (val && val[0]) {
        snprintf(buf, size, "%s", (const char *)val);
        found = true;
    }
    xmlFree(val);
    return found;
}

static bool plain_alias(const char *alias)
{
    return alias[0] && !strpbrk(alias, "'\"");
}

bool domxml_has_alias(DomainXml *x, const char *alias)
{
    char buf[256];

    return plain_alias(alias) &&
        xpath_string(x, buf, sizeof(buf),
                     "string(/domain/devices//alias[@name='%s']/@name)",
                     alias);
}

int domxml_passthru_port_index(DomainXml *x, const char *port)
{
    char index[32], driver[64];
    int i, n = -1;

    if (!plain_alias(port) ||
        !xpath_string(x, index, sizeof(index),
                      "string(/domain/devices/controller[@type='pci' and "
                      "@model='pcie-root-port' and alias/@name='%s']"
                      "/@index)", port) ||
        !xpath_string(x, driver, sizeof(driver),
                      "string(/domain/qemu:override/qemu:device"
                      "[@alias='%s']/qemu:frontend/qemu:property"
                      "[@name='driver']/@value)", port) ||
        strcmp(driver, PASSTHRU_PORT)) {
        return -1;
    }
    sscanf(index, "%d%n", &i, &n);
    return n < 0 || index[n] || i < 1 || i > 255 ? -1 : i;
}

bool domxml_device_on_bus(DomainXml *x, int index, char *buf, size_t size)
{
    /* Addresses are written in hex (0x04) by libvirt */
    return xpath_string(x, buf, size,
                        "string(/domain/devices/node()[address[@type='pci' and "
                        "@bus='0x%02x']]/alias/@name)", index) ||
        xpath_string(x, buf, size,
                     "string(/domain/devices/node()[address[@type='pci' and "
                     "@bus='0x%02x']]/target/@dev)", index);
}

bool domxml_pci_hostdev(DomainXml *x, const char *alias, char *port,
                        size_t size)
{
    char bus[32], tmp[8];
    unsigned i;
    int n = -1;

    if (!plain_alias(alias) ||
        !xpath_string(x, tmp, sizeof(tmp),
                      "string(/domain/devices/hostdev[@type='pci' and "
                      "alias/@name='%s']/@type)", alias)) {
        return false;
    }
    port[0] = '\0';
    if (xpath_string(x, bus, sizeof(bus),
                     "string(/domain/devices/hostdev[alias/@name='%s']"
                     "/address[@type='pci']/@bus)", alias)) {
        sscanf(bus, "%x%n", &i, &n);
        if (n > 0 && !bus[n] && i > 0 && i < 256) {
            xpath_string(x, port, size,
                         "string(/domain/devices/controller[@type='pci' "
                         "and @index='%u']/alias/@name)", i);
        }
    }
    return true;
}
