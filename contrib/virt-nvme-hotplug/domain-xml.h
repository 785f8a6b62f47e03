/*
 * virt-nvme-hotplug: what the domain's live XML says about its ports
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VIRT_NVME_HOTPLUG_DOMAIN_XML_H
#define VIRT_NVME_HOTPLUG_DOMAIN_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

typedef struct DomainXml DomainXml;

/* The live XML of DOM; NULL with the reason in WHY */
DomainXml *domxml_get(virDomainPtr dom, char *why, size_t size);
void domxml_free(DomainXml *x);

/* Is ALIAS the alias of a device or controller of the domain? */
bool domxml_has_alias(DomainXml *x, const char *alias);

/*
 * The index of the pcie-root-port controller with alias PORT that a
 * <qemu:override> turns into a pcie-hotplug-passthru port; -1 if there
 * is none
 */
int domxml_passthru_port_index(DomainXml *x, const char *port);

/*
 * The alias of a device libvirt placed on bus INDEX (into BUF), or false
 * when libvirt has none there
 */
bool domxml_device_on_bus(DomainXml *x, int index, char *buf, size_t size);

/*
 * Is ALIAS a PCI <hostdev>?  Then the alias of the controller it sits
 * on goes to PORT (empty when that is not known)
 */
bool domxml_pci_hostdev(DomainXml *x, const char *alias, char *port,
                        size_t size);

#endif
