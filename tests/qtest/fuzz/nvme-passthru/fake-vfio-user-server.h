/*
 * An in-process fake vfio-user server for the NVMe passthrough fuzz targets
 *
 * One thread serves a few UNIX sockets, one for each pcie-hotplug-passthru
 * port: by default it exports a well-behaved NVMe-class PCI function (4 KiB
 * config space with MSI-X and PCI Express capabilities, a 16 KiB BAR0),
 * and a script can make it misbehave at chosen messages: close the socket,
 * reply with a wrong size, a corrupted payload or header, an error, no
 * reply, a duplicate, file descriptors, or a request of its own.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef FAKE_VFIO_USER_SERVER_H
#define FAKE_VFIO_USER_SERVER_H

#define FAKE_SERVER_MAX_SOCKETS 2
#define FAKE_SERVER_MAX_RULES   32

/* What a rule does to the reply to the message it matches */
typedef enum FakeServerAction {
    FAKE_CLOSE,         /* close the socket instead of replying */
    FAKE_SIZE,          /* reply with val % 8192 bytes (padded/truncated) */
    FAKE_POKE32,        /* payload u32 at off = val */
    FAKE_POKE8,         /* payload byte at off = val */
    FAKE_ERROR,         /* error reply, error_reply = val */
    FAKE_ID,            /* wrong message id: id ^= val */
    FAKE_FLAGS,         /* header flags = val */
    FAKE_DROP,          /* no reply at all (the client times out) */
    FAKE_DUP,           /* the reply twice */
    FAKE_SHORT,         /* the first val % size bytes, then close */
    FAKE_REQUEST,       /* first a request of our own (DMA read/write) */
    FAKE_FDS,           /* pass /dev/null, or a memfd of val bytes */
    FAKE_COMMAND,       /* header command = val */
    FAKE_ACTION_MAX,
} FakeServerAction;

/*
 * A rule matches the @nth message of command @cmd (1..15) on the current
 * input, or with @cmd 0 the @nth message of any command.
 */
typedef struct FakeServerRule {
    uint8_t cmd;
    uint8_t nth;
    uint8_t action;
    uint8_t off;
    uint32_t val;
} FakeServerRule;

/* Start the thread; @dir gets the sockets "vfu0.sock", "vfu1.sock" */
void fake_server_start(const char *dir);
const char *fake_server_socket(int i);

/* A new input: forget the message counts, install @n rules */
void fake_server_reset(const FakeServerRule *rules, int n);

/* Close the connections of socket @i, as a host losing the device */
void fake_server_close(int i);

/* Bit i set: a connection of socket @i was closed since the last call */
unsigned fake_server_take_closed(void);

/* Number of open connections */
int fake_server_connections(void);

/* Messages served since the start */
uint64_t fake_server_messages(void);

#endif
