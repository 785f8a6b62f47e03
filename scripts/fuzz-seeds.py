#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Write the seed corpora of the NVMe passthrough fuzz targets to
# tests/fuzz/corpus/TARGET/ (the input format is described in
# tests/qtest/fuzz/nvme-passthru/nvme-passthru-fuzz.c).  Each seed is a
# scenario worth starting from: a complete hot-add, each kind of removal,
# the unplug timeout, two ports at once; for the server target, each kind
# of misbehaviour on each command, and the socket closed at each message.
#
# Usage: scripts/fuzz-seeds.py [OUTPUT-DIR]   (default tests/fuzz/corpus)

import os
import struct
import sys

(PORT_CFG_WRITE, PORT_CFG_READ, DEV_CFG_WRITE, DEV_CFG_READ, ACPI_WRITE,
 ACPI_READ, PLUG, UNPLUG, SURPRISE, HOST_GONE, GUEST_ENABLE, GUEST_EJECT,
 CLOCK_STEP, SET_PROPERTY, MMIO_WRITE, MMIO_READ, QUERY, RESET) = range(18)

# FakeServerAction
(CLOSE, SIZE, POKE32, POKE8, ERROR, ID, FLAGS, DROP, DUP, SHORT, REQUEST,
 FDS, COMMAND) = range(13)

# vfio-user commands
VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, GET_REGION_INFO = 1, 2, 3, 4, 5
GET_IRQ_INFO, SET_IRQS, REGION_READ, REGION_WRITE = 7, 8, 9, 10
DEVICE_RESET = 13

SIZE_IDX = {1: 0, 2: 1, 4: 2}


def op(code, port=0, size=4, flags=0):
    return bytes([code, port | (SIZE_IDX[size] << 1) | flags])


def port_cfg_write(port, reg, val, size=4):
    return op(PORT_CFG_WRITE, port, size) + struct.pack('<HI', reg, val)


def port_cfg_read(port, reg, size=4):
    return op(PORT_CFG_READ, port, size) + struct.pack('<H', reg)


def dev_cfg_write(port, reg, val, size=4):
    return op(DEV_CFG_WRITE, port, size) + struct.pack('<HI', reg, val)


def dev_cfg_read(port, reg, size=4):
    return op(DEV_CFG_READ, port, size) + struct.pack('<H', reg)


def acpi_write(reg, val, size=4):
    return op(ACPI_WRITE, 0, size) + struct.pack('<BI', reg, val)


def acpi_read(reg, size=4):
    return op(ACPI_READ, 0, size) + struct.pack('<B', reg)


def simple(code, port=0):
    return op(code, port)


def clock_step(ms):
    return op(CLOCK_STEP) + struct.pack('<H', ms)


def unplug_timeout(port, ms):
    return op(SET_PROPERTY, port, flags=0x80) + struct.pack('<H', ms)


def removal(port, surprise):
    return op(SET_PROPERTY, port, flags=0x40 if surprise else 0)


def mmio_write(port, off, val, size=4):
    return op(MMIO_WRITE, port, size) + struct.pack('<HI', off, val)


def mmio_read(port, off, size=4):
    return op(MMIO_READ, port, size) + struct.pack('<H', off)


def add(port):
    return simple(PLUG, port) + simple(GUEST_ENABLE, port)


def hotplug_seeds():
    s = {}
    s['add'] = add(0)
    s['add-remove'] = add(0) + simple(UNPLUG) + simple(GUEST_EJECT)
    s['add-surprise'] = add(0) + simple(SURPRISE)
    s['add-host-gone'] = add(0) + simple(HOST_GONE)
    s['add-cut-short'] = simple(PLUG) + simple(SURPRISE)
    s['add-host-gone-before-enable'] = simple(PLUG) + simple(HOST_GONE)
    s['remove-timeout'] = (add(0) + unplug_timeout(0, 10) + simple(UNPLUG) +
                           clock_step(20))
    s['remove-escalated'] = add(0) + simple(UNPLUG) + removal(0, True)
    s['remove-host-gone'] = add(0) + simple(UNPLUG) + simple(HOST_GONE)
    s['two-ports'] = (simple(PLUG, 0) + simple(PLUG, 1) +
                      simple(GUEST_ENABLE, 0) + simple(PLUG, 1) +
                      simple(GUEST_ENABLE, 1) + simple(UNPLUG, 0) +
                      simple(UNPLUG, 1) + simple(GUEST_EJECT, 0) +
                      simple(UNPLUG, 1) + simple(GUEST_EJECT, 1) +
                      simple(QUERY))
    s['replug'] = (add(0) + simple(SURPRISE) + simple(GUEST_EJECT) +
                   add(0) + simple(HOST_GONE) + simple(GUEST_EJECT) + add(0))
    s['device-io'] = (add(0) + mmio_read(0, 0) + mmio_read(0, 8) +
                      mmio_write(0, 0x14, 0x460001) + mmio_read(0, 0x1c) +
                      mmio_write(0, 0x2000, 0xfee00000) +
                      mmio_read(0, 0x3000) + dev_cfg_read(0, 0) +
                      dev_cfg_read(0, 0x40) + dev_cfg_write(0, 4, 0, 2) +
                      dev_cfg_write(0, 0x42, 0x8000, 2) +
                      dev_cfg_read(0, 0x100))
    s['reset-with-device'] = add(0) + simple(RESET) + simple(QUERY)
    s['acpi-registers'] = (b''.join(acpi_read(r) for r in range(0, 0x18, 4)) +
                           simple(PLUG) + acpi_write(0x10, 0) +
                           acpi_read(0) + acpi_read(4) +
                           acpi_write(8, 1) + acpi_read(0x0c))
    # Bus numbers, windows, Slot Control, Root Control, AER of the port
    s['port-config'] = (b''.join(port_cfg_read(0, r) for r in
                                 range(0, 0x100, 4)) +
                        port_cfg_write(0, 0x18, 0x000000) +
                        simple(PLUG) + port_cfg_write(0, 0x18, 0x010100) +
                        b''.join(port_cfg_read(0, r) for r in
                                 range(0x100, 0x180, 4)) +
                        simple(GUEST_ENABLE) +
                        port_cfg_write(0, 0x3c, 0x00400000) +
                        simple(UNPLUG))
    return s


def rule(cmd, nth, action, off=0, val=0):
    return struct.pack('<BBBBI', cmd, nth, action, off, val)


def server_input(rules, ops=b''):
    return bytes([len(rules)]) + b''.join(rules) + ops


# After the hot-add: MMIO, a config read, a reset, the removal
SERVER_OPS = (mmio_read(0, 0) + mmio_write(0, 0x14, 1) + mmio_read(0, 0x3000) +
              dev_cfg_read(0, 0x40) + simple(RESET) + simple(SURPRISE))


def server_seeds():
    s = {}
    s['plain'] = server_input([], SERVER_OPS)
    # The socket closed at each message of the hot-add and what follows
    for k in range(64):
        s['close-at-%02d' % k] = server_input([rule(0, k, CLOSE)],
                                              SERVER_OPS)
    cmds = {'version': VERSION, 'dma-map': DMA_MAP, 'info': GET_INFO,
            'region-info': GET_REGION_INFO, 'irq-info': GET_IRQ_INFO,
            'set-irqs': SET_IRQS, 'region-read': REGION_READ,
            'region-write': REGION_WRITE, 'reset': DEVICE_RESET}
    for name, c in cmds.items():
        for v in (0, 16, 20, 31, 4096):
            s['%s-size-%d' % (name, v)] = server_input([rule(c, 0, SIZE,
                                                             val=v)],
                                                       SERVER_OPS)
        s[name + '-error'] = server_input([rule(c, 0, ERROR, val=22)],
                                          SERVER_OPS)
        s[name + '-drop'] = server_input([rule(c, 0, DROP)], SERVER_OPS)
        s[name + '-dup'] = server_input([rule(c, 0, DUP)], SERVER_OPS)
        s[name + '-id'] = server_input([rule(c, 0, ID, val=1)], SERVER_OPS)
        s[name + '-flags'] = server_input([rule(c, 0, FLAGS, val=0)],
                                          SERVER_OPS)
        s[name + '-short'] = server_input([rule(c, 0, SHORT, val=10)],
                                          SERVER_OPS)
        s[name + '-fds'] = server_input([rule(c, 0, FDS)], SERVER_OPS)
        s[name + '-command'] = server_input([rule(c, 0, COMMAND, val=c + 1)],
                                            SERVER_OPS)
        s[name + '-close'] = server_input([rule(c, 0, CLOSE)], SERVER_OPS)
    # Bad device, region and irq info (payload offsets after the header)
    info = {'argsz-big': (0, 0x1000), 'flags-none': (4, 0),
            'regions-0': (8, 0), 'regions-101': (8, 101),
            'regions-2': (8, 2), 'irqs-0': (12, 0), 'irqs-51': (12, 51)}
    for name, (off, val) in info.items():
        s['info-' + name] = server_input([rule(GET_INFO, 0, POKE32, off,
                                               val)], SERVER_OPS)
    region = {'argsz-huge': (0, 0xffffffff), 'argsz-64': (0, 64),
              'argsz-small': (0, 8), 'caps': (4, 0xf),
              'cap-offset': (12, 32), 'index': (8, 9),
              'size-odd': (16, 0x3001), 'size-huge': (20, 0xffffffff)}
    for name, (off, val) in region.items():
        for nth in (0, 7):
            s['region-info-%d-%s' % (nth, name)] = server_input(
                [rule(GET_REGION_INFO, nth, POKE32, off, val)], SERVER_OPS)
    s['region-info-caps-offset'] = server_input(
        [rule(GET_REGION_INFO, 0, POKE32, 4, 0xf),
         rule(GET_REGION_INFO, 0, POKE32, 12, 32),
         rule(GET_REGION_INFO, 0, POKE32, 0, 40),
         rule(GET_REGION_INFO, 1, POKE32, 0, 40)], SERVER_OPS)
    # Capability chains: first header at argsz, next pointing back
    s['region-info-caps-at-end'] = server_input(
        [rule(GET_REGION_INFO, 0, POKE32, 4, 0xf),
         rule(GET_REGION_INFO, 0, POKE32, 12, 32)], SERVER_OPS)
    s['region-info-caps-loop'] = server_input(
        [rule(GET_REGION_INFO, 0, POKE32, 4, 0xf),
         rule(GET_REGION_INFO, 0, POKE32, 12, 24),
         rule(GET_REGION_INFO, 0, POKE32, 24, 0x00180001)], SERVER_OPS)
    irq = {'count-0': (12, 0), 'count-huge': (12, 0xffffffff),
           'count-2': (12, 2), 'flags-0': (4, 0), 'index': (8, 7)}
    for name, (off, val) in irq.items():
        for nth in (0, 1, 2):
            s['irq-info-%d-%s' % (nth, name)] = server_input(
                [rule(GET_IRQ_INFO, nth, POKE32, off, val)], SERVER_OPS)
    s['version-minor'] = server_input([rule(VERSION, 0, POKE32, 0,
                                            0x00010000)], SERVER_OPS)
    s['version-caps'] = server_input([rule(VERSION, 0, POKE8, 20, ord('x'))],
                                     SERVER_OPS)
    s['version-caps-nul'] = server_input([rule(VERSION, 0, POKE8, 200, 0)],
                                         SERVER_OPS)
    s['region-read-count'] = server_input([rule(REGION_READ, 1, POKE32, 12,
                                                0x10000)], SERVER_OPS)
    # The config space as the server tells it.  The realize's config
    # reads, in order: the whole space (0), the ROM BAR before and after
    # sizing (1, 2), BAR 0 (3), MSI-X flags, table and PBA (4, 5, 6);
    # the data follow a 16-byte header.
    cfg = {'rom-size-odd': (2, POKE32, 0x2002),
           'bar-read-error': (3, ERROR, 5),
           'msix-table-bir-7': (5, POKE32, 7),
           'msix-table-bar-2': (5, POKE32, 0x2002),
           'msix-pba-bir-7': (6, POKE32, 7)}
    # The capability list (MSI-X at 0x40, PCI Express at 0x60): a loop, a
    # capability that is its own next, a pointer into the header; an
    # interrupt pin that does not exist
    cfg.update({'cap-loop': (0, POKE8, 0x40, 0x61),
                'cap-self': (0, POKE8, 0x40, 0x41),
                'cap-into-header': (0, POKE8, 0x3c, 0x61),
                'pin-9': (0, POKE8, 9, 0x3d),
                # what QEMU already refuses or copes with
                'msix-table-past-bar': (5, POKE32, 0x3ff8),
                'msix-pba-past-bar': (6, POKE32, 0x3ffc),
                'msix-qsize-max': (0, POKE32, 0x7ff, 0x42),
                'exp-type-root-port': (0, POKE8, 0x42, 0x62),
                'header-type-bridge': (0, POKE8, 0x01, 0x0e),
                'class-bridge': (0, POKE32, 0x06040000, 0x08),
                'status-no-cap-list': (0, POKE8, 0x00, 0x06)})
    for name, (nth, action, val, *at) in cfg.items():
        s['config-' + name] = server_input(
            [rule(REGION_READ, nth, action, 16 + (at[0] if at else 0), val)],
            SERVER_OPS)
    # Region info for another region than asked, with a size that is no
    # power of 2 (the checks took the server's index)
    s['region-info-0-index-size-odd'] = server_input(
        [rule(GET_REGION_INFO, 0, POKE32, 8, 9),
         rule(GET_REGION_INFO, 0, POKE32, 16, 0x3001)], SERVER_OPS)
    # BAR 0 with a sparse mmap capability of one area (argsz 64, flags
    # READ|WRITE|MMAP|CAPS, the capability at 32; asked for twice): the
    # area's offset, size, the region's file offset, the file's size
    sparse = {'ok': (0x1000, 0x1000, 0, 0x4000),
              'offset-overflow': (0x7fffffffffffff00, 0x1000,
                                  0x7fffffffffff0000, 0x4000),
              'offset-negative': (1 << 63, 0x1000, 0, 0x4000),
              'file-offset-negative': (0x1000, 0x1000, 1 << 63, 0x4000),
              'past-the-region': (0x3000, 0x4000, 0, 0x4000),
              'unaligned': (0x123, 0x1000, 0, 0x4000),
              'file-short': (0x1000, 0x1000, 0, 0x1000)}
    for name, (off, size, fd_off, fd_size) in sparse.items():
        g = GET_REGION_INFO
        s['region-sparse-' + name] = server_input(
            [rule(g, 0, POKE32, 0, 64), rule(g, 0, POKE32, 4, 0xf),
             rule(g, 0, POKE32, 12, 32), rule(g, 1, SIZE, 0, 16 + 64),
             rule(g, 1, POKE32, 0, 64), rule(g, 1, POKE32, 4, 0xf),
             rule(g, 1, POKE32, 12, 32), rule(g, 1, POKE32, 32, 0x00010001),
             rule(g, 1, POKE32, 40, 1),
             rule(g, 1, POKE32, 48, off & 0xffffffff),
             rule(g, 1, POKE32, 52, off >> 32),
             rule(g, 1, POKE32, 56, size), rule(g, 1, POKE32, 24, fd_off &
                                                0xffffffff),
             rule(g, 1, POKE32, 28, fd_off >> 32),
             rule(g, 1, FDS, 0, fd_size)],
            mmio_read(0, 0x1000) + mmio_write(0, 0x1008, 1) + SERVER_OPS)
    # BAR 0 to be mapped (flags READ|WRITE|MMAP) from a memfd that holds
    # 16 bytes of it, then a guest access past the first page
    for name, size in (('short', 0x10), ('whole', 0x4000)):
        s['region-mmap-file-' + name] = server_input(
            [rule(GET_REGION_INFO, 0, POKE32, 4, 0x7),
             rule(GET_REGION_INFO, 0, FDS, 0, size)],
            mmio_read(0, 0x1000) + mmio_write(0, 0x1008, 1) + SERVER_OPS)
    # Requests of the server's own
    reqs = {'dma-read': 0x10 << 16, 'dma-write': (0x10 << 16) | 1,
            'dma-read-noreply': (0x10 << 16) | 2,
            'dma-read-big': 0x400 | (0xfff << 16),
            'bad-command': 0x100 | (5 << 4),
            'short-header': 0x200 | (8 << 20),
            'count-lie': 0x400 | 1 | (0x10 << 16)}
    for name, val in reqs.items():
        s['request-' + name] = server_input([rule(REGION_READ, 0, REQUEST,
                                                  0x10, val)], SERVER_OPS)
    return s


def write(top, target, seeds):
    d = os.path.join(top, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, 'seed-' + name), 'wb') as f:
            f.write(data)


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fuzz',
        'corpus')
    h = hotplug_seeds()
    write(top, 'nvme-passthru-hotplug-acpi', h)
    write(top, 'nvme-passthru-hotplug-native', h)
    write(top, 'vfio-user-nvme-server', server_seeds())


if __name__ == '__main__':
    main()
