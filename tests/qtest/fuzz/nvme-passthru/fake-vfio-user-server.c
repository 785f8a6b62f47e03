/*
 * An in-process fake vfio-user server for the NVMe passthrough fuzz targets
 *
 * The vfio-user client in QEMU sends a request and waits for the reply
 * with the BQL held, while its own iothread receives.  This server runs
 * in a thread of its own, so the fuzz target (on the main thread) drives
 * the guest and QMP, and the server answers on the other end of the
 * socket as an out-of-process device would.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/vfio.h>
#include "qemu/bswap.h"
#include "qemu/thread.h"
#include "hw/pci/pci.h"
#include "hw/vfio-user/protocol.h"
#include "fake-vfio-user-server.h"

#define MAX_CONNS       8
#define MAX_MSG         (8 * 1024 * 1024)
#define MAX_FDS         16
#define CONFIG_SIZE     4096
#define BAR0_SIZE       (16 * 1024)
#define MSIX_VECTORS    32
#define MSIX_TABLE      0x2000
#define MSIX_PBA        0x3000

typedef struct Conn {
    int fd;
    int sock;                       /* index of the listening socket */
    uint8_t config[CONFIG_SIZE];
    uint8_t bar0[BAR0_SIZE];
} Conn;

typedef struct FakeServer {
    QemuThread thread;
    QemuMutex lock;
    QemuCond cond;
    int listen_fd[FAKE_SERVER_MAX_SOCKETS];
    char *path[FAKE_SERVER_MAX_SOCKETS];
    int ctl[2];                     /* main thread -> server: close requests */
    Conn *conn[MAX_CONNS];

    /* Under lock */
    FakeServerRule rules[FAKE_SERVER_MAX_RULES];
    int nrules;
    unsigned count[16];             /* messages per command, this input */
    unsigned total;                 /* messages of any command, this input */
    unsigned closed;                /* sockets whose connection closed */
    int nconns;
    int close_done;                 /* acknowledged close requests */
    uint64_t messages;
} FakeServer;

static FakeServer srv;

/* The NVMe-class function each connection exports */
static void device_init(Conn *c)
{
    uint8_t *cfg = c->config;

    memset(cfg, 0, sizeof(c->config));
    pci_set_word(cfg + PCI_VENDOR_ID, 0x1b36);
    pci_set_word(cfg + PCI_DEVICE_ID, 0x0010);
    pci_set_word(cfg + PCI_STATUS, PCI_STATUS_CAP_LIST);
    pci_set_byte(cfg + PCI_REVISION_ID, 2);
    pci_set_byte(cfg + PCI_CLASS_PROG, 0x02);
    pci_set_word(cfg + PCI_CLASS_DEVICE, 0x0108);
    pci_set_long(cfg + PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_SPACE_MEMORY);
    pci_set_word(cfg + PCI_SUBSYSTEM_VENDOR_ID, 0x1af4);
    pci_set_word(cfg + PCI_SUBSYSTEM_ID, 0x1100);
    pci_set_byte(cfg + PCI_CAPABILITY_LIST, 0x40);
    pci_set_byte(cfg + PCI_INTERRUPT_PIN, 1);

    /* MSI-X: table and PBA in BAR0 */
    pci_set_byte(cfg + 0x40 + PCI_CAP_LIST_ID, PCI_CAP_ID_MSIX);
    pci_set_byte(cfg + 0x40 + PCI_CAP_LIST_NEXT, 0x60);
    pci_set_word(cfg + 0x40 + PCI_MSIX_FLAGS, MSIX_VECTORS - 1);
    pci_set_long(cfg + 0x40 + PCI_MSIX_TABLE, MSIX_TABLE);
    pci_set_long(cfg + 0x40 + PCI_MSIX_PBA, MSIX_PBA);

    /* PCI Express v2 endpoint, 4 GT/s x1 */
    pci_set_byte(cfg + 0x60 + PCI_CAP_LIST_ID, PCI_CAP_ID_EXP);
    pci_set_word(cfg + 0x60 + PCI_EXP_FLAGS, 2);
    pci_set_long(cfg + 0x60 + PCI_EXP_LNKCAP, 0x12);
    pci_set_word(cfg + 0x60 + PCI_EXP_LNKSTA, 0x12);

    memset(c->bar0, 0, sizeof(c->bar0));
    /* NVMe CAP: MQES 63, CQR, TO 1 s; VS 1.4 */
    stq_le_p(c->bar0, 0x000000200f01003fULL);
    stl_le_p(c->bar0 + 8, 0x00010400);
}

static bool region_buf(Conn *c, uint32_t region, uint8_t **buf, size_t *size)
{
    switch (region) {
    case VFIO_PCI_BAR0_REGION_INDEX:
        *buf = c->bar0;
        *size = sizeof(c->bar0);
        return true;
    case VFIO_PCI_CONFIG_REGION_INDEX:
        *buf = c->config;
        *size = sizeof(c->config);
        return true;
    }
    return false;
}

/* I/O helpers: the sockets are blocking */

static bool read_full(int fd, void *buf, size_t len)
{
    while (len) {
        ssize_t n = read(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf = (char *)buf + n;
        len -= n;
    }
    return true;
}

static void send_buf(Conn *c, const void *buf, size_t len, int pass_fd)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    char control[CMSG_SPACE(sizeof(int))];
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    struct cmsghdr *cm;

    if (pass_fd >= 0) {
        memset(control, 0, sizeof(control));
        mh.msg_control = control;
        mh.msg_controllen = sizeof(control);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    while (iov.iov_len) {
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;     /* the client is gone; its EOF comes next */
        }
        iov.iov_base = (char *)iov.iov_base + n;
        iov.iov_len -= n;
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
    }
}

static void conn_close(int i)
{
    Conn *c = srv.conn[i];

    close(c->fd);
    qemu_mutex_lock(&srv.lock);
    srv.closed |= 1u << c->sock;
    srv.nconns--;
    qemu_mutex_unlock(&srv.lock);
    g_free(c);
    srv.conn[i] = NULL;
}

/* The default, well-behaved reply to @req; NULL for none */
static VFIOUserHdr *default_reply(Conn *c, VFIOUserHdr *req, size_t *size)
{
    VFIOUserHdr *r = NULL;

    *size = sizeof(VFIOUserHdr);
    switch (req->command) {
    case VFIO_USER_VERSION: {
        static const char caps[] = "{\"capabilities\":{\"max_msg_fds\":8,"
            "\"max_data_xfer_size\":1048576,\"pgsizes\":4096,"
            "\"max_dma_maps\":65535,\"write_multiple\":true}}";
        VFIOUserVersion *v;

        *size = sizeof(*v) + sizeof(caps);
        v = g_malloc0(*size);
        v->major = VFIO_USER_MAJOR_VER;
        v->minor = VFIO_USER_MINOR_VER;
        memcpy(v->capabilities, caps, sizeof(caps));
        r = &v->hdr;
        break;
    }
    case VFIO_USER_DEVICE_GET_INFO: {
        VFIOUserDeviceInfo *d = g_new0(VFIOUserDeviceInfo, 1);

        *size = sizeof(*d);
        d->argsz = sizeof(*d) - sizeof(d->hdr);
        d->flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
        d->num_regions = VFIO_PCI_NUM_REGIONS;
        d->num_irqs = VFIO_PCI_NUM_IRQS;
        r = &d->hdr;
        break;
    }
    case VFIO_USER_DEVICE_GET_REGION_INFO: {
        VFIOUserRegionInfo *q = (VFIOUserRegionInfo *)req;
        VFIOUserRegionInfo *ri = g_new0(VFIOUserRegionInfo, 1);
        uint32_t index = req->size >= sizeof(*q) ? q->index : 0;

        *size = sizeof(*ri);
        ri->argsz = sizeof(struct vfio_region_info);
        ri->index = index;
        ri->offset = (uint64_t)index << 40;
        if (index == VFIO_PCI_BAR0_REGION_INDEX) {
            ri->size = BAR0_SIZE;
        } else if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
            ri->size = CONFIG_SIZE;
        }
        if (ri->size) {
            ri->flags = VFIO_REGION_INFO_FLAG_READ |
                        VFIO_REGION_INFO_FLAG_WRITE;
        }
        r = &ri->hdr;
        break;
    }
    case VFIO_USER_DEVICE_GET_IRQ_INFO: {
        VFIOUserIRQInfo *q = (VFIOUserIRQInfo *)req;
        VFIOUserIRQInfo *ii = g_new0(VFIOUserIRQInfo, 1);
        uint32_t index = req->size >= sizeof(*q) ? q->index : 0;

        *size = sizeof(*ii);
        ii->argsz = sizeof(struct vfio_irq_info);
        ii->index = index;
        ii->flags = VFIO_IRQ_INFO_EVENTFD;
        switch (index) {
        case VFIO_PCI_INTX_IRQ_INDEX:
            ii->count = 1;
            ii->flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
            break;
        case VFIO_PCI_MSI_IRQ_INDEX:
            ii->count = 1;
            ii->flags |= VFIO_IRQ_INFO_NORESIZE;
            break;
        case VFIO_PCI_MSIX_IRQ_INDEX:
            ii->count = MSIX_VECTORS;
            ii->flags |= VFIO_IRQ_INFO_NORESIZE;
            break;
        default:
            ii->count = 1;
        }
        r = &ii->hdr;
        break;
    }
    case VFIO_USER_REGION_READ: {
        VFIOUserRegionRW *q = (VFIOUserRegionRW *)req;
        VFIOUserRegionRW *rw;
        uint8_t *buf;
        size_t len;

        if (req->size < sizeof(*q) || q->count > 1024 * 1024 ||
            !region_buf(c, q->region, &buf, &len) ||
            q->offset > len || q->count > len - q->offset) {
            return NULL;    /* error reply */
        }
        *size = sizeof(*rw) + q->count;
        rw = g_malloc0(*size);
        rw->offset = q->offset;
        rw->region = q->region;
        rw->count = q->count;
        memcpy(rw->data, buf + q->offset, q->count);
        r = &rw->hdr;
        break;
    }
    case VFIO_USER_REGION_WRITE: {
        VFIOUserRegionRW *q = (VFIOUserRegionRW *)req;
        VFIOUserRegionRW *rw;
        uint8_t *buf;
        size_t len;

        if (req->size < sizeof(*q) || q->count > req->size - sizeof(*q) ||
            !region_buf(c, q->region, &buf, &len) ||
            q->offset > len || q->count > len - q->offset) {
            return NULL;
        }
        /* Keep the identity and the capability chain read-only */
        if (q->region != VFIO_PCI_CONFIG_REGION_INDEX ||
            (q->offset >= PCI_COMMAND && q->offset + q->count <= 0x08) ||
            (q->offset >= 0x40 + PCI_MSIX_FLAGS &&
             q->offset + q->count <= 0x40 + PCI_MSIX_FLAGS + 2)) {
            memcpy(buf + q->offset, q->data, q->count);
        }
        *size = sizeof(*rw);
        rw = g_new0(VFIOUserRegionRW, 1);
        rw->offset = q->offset;
        rw->region = q->region;
        rw->count = q->count;
        r = &rw->hdr;
        break;
    }
    case VFIO_USER_REGION_WRITE_MULTI:
        break;
    case VFIO_USER_DEVICE_RESET:
        device_init(c);
        /* fall through */
    case VFIO_USER_DMA_MAP:
    case VFIO_USER_DMA_UNMAP:
    case VFIO_USER_DEVICE_SET_IRQS:
        r = g_new0(VFIOUserHdr, 1);
        break;
    default:
        return NULL;
    }
    return r;
}

/* A request of the server's own: DMA read or write of guest memory */
static void send_request(Conn *c, const FakeServerRule *rule)
{
    uint32_t count = (rule->val >> 16) & 0xfff;
    size_t size = sizeof(VFIOUserDMARW) + ((rule->val & 1) ? count : 0);
    g_autofree VFIOUserDMARW *m = g_malloc0(size);

    m->hdr.id = 0x8000 | rule->off;
    m->hdr.command = (rule->val & 0x100) ? (rule->val >> 4) & 0xf :
                     (rule->val & 1) ? VFIO_USER_DMA_WRITE :
                     VFIO_USER_DMA_READ;
    m->hdr.size = (rule->val & 0x200) ? rule->val >> 20 : size;
    m->hdr.flags = VFIO_USER_REQUEST | ((rule->val & 2) ?
                                        VFIO_USER_NO_REPLY : 0);
    m->offset = (uint64_t)rule->off << 12;
    m->count = (rule->val & 0x400) ? rule->val : count;
    memset(m->data, 0xa5, size - sizeof(*m));
    send_buf(c, m, size, -1);
}

/* Serve one message on connection @i; false when it is closed */
static bool serve_one(int i)
{
    Conn *c = srv.conn[i];
    VFIOUserHdr hdr;
    struct iovec iov = { .iov_base = &hdr, .iov_len = sizeof(hdr) };
    char control[CMSG_SPACE(MAX_FDS * sizeof(int))];
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control, .msg_controllen = sizeof(control),
    };
    g_autofree VFIOUserHdr *req = NULL;
    g_autofree VFIOUserHdr *reply = NULL;
    FakeServerRule rules[FAKE_SERVER_MAX_RULES];
    int nrules = 0, r, pass_fd = -1;
    bool drop = false, dup = false, close_after = false;
    size_t size, send_len = 0;
    long lie_size = -1;
    struct cmsghdr *cm;
    ssize_t n;

    do {
        n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    for (cm = CMSG_FIRSTHDR(&mh); n > 0 && cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int *fds = (int *)CMSG_DATA(cm);

            for (r = 0; r < nfd; r++) {
                close(fds[r]);
            }
        }
    }
    if (n <= 0 ||
        (n < sizeof(hdr) && !read_full(c->fd, (char *)&hdr + n,
                                       sizeof(hdr) - n)) ||
        hdr.size < sizeof(hdr) || hdr.size > MAX_MSG) {
        return false;
    }
    req = g_malloc0(hdr.size);
    *req = hdr;
    if (!read_full(c->fd, req + 1, hdr.size - sizeof(hdr))) {
        return false;
    }
    if ((hdr.flags & VFIO_USER_TYPE) == VFIO_USER_REPLY) {
        return true;    /* the client's answer to a request of ours */
    }

    /* Which rules apply to this message */
    qemu_mutex_lock(&srv.lock);
    srv.messages++;
    for (r = 0; r < srv.nrules; r++) {
        FakeServerRule *rule = &srv.rules[r];

        if ((rule->cmd == 0 && rule->nth == srv.total) ||
            (rule->cmd != 0 && rule->cmd == (hdr.command & 0xf) &&
             rule->nth == srv.count[hdr.command & 0xf])) {
            rules[nrules++] = *rule;
        }
    }
    srv.total++;
    srv.count[hdr.command & 0xf]++;
    qemu_mutex_unlock(&srv.lock);

    reply = default_reply(c, req, &size);
    if (!reply) {
        if (hdr.flags & VFIO_USER_NO_REPLY) {
            size = 0;
        } else {
            reply = g_new0(VFIOUserHdr, 1);
            size = sizeof(*reply);
            reply->flags = VFIO_USER_ERROR;
            reply->error_reply = (hdr.command == VFIO_USER_REGION_READ ||
                                  hdr.command == VFIO_USER_REGION_WRITE) ?
                                 EINVAL : ENOSYS;
        }
    } else if (hdr.flags & VFIO_USER_NO_REPLY) {
        g_free(reply);
        reply = NULL;
        size = 0;
    }
    if (reply) {
        reply->id = hdr.id;
        reply->command = hdr.command;
        reply->flags |= VFIO_USER_REPLY;
    }

    for (r = 0; r < nrules; r++) {
        const FakeServerRule *rule = &rules[r];
        size_t new_size;

        switch (rule->action % FAKE_ACTION_MAX) {
        case FAKE_CLOSE:
            return false;
        case FAKE_REQUEST:
            send_request(c, rule);
            break;
        case FAKE_DROP:
            drop = true;
            break;
        default:
            break;
        }
        if (!reply) {
            continue;
        }
        switch (rule->action % FAKE_ACTION_MAX) {
        case FAKE_SIZE:
            new_size = rule->val % 8192;
            if (new_size < sizeof(VFIOUserHdr)) {
                lie_size = new_size;    /* the client must refuse it */
                new_size = sizeof(VFIOUserHdr);
            }
            reply = g_realloc(reply, new_size);
            if (new_size > size) {
                memset((char *)reply + size, 0, new_size - size);
            }
            size = new_size;
            break;
        case FAKE_POKE32:
            if (size >= sizeof(*reply) + 4) {
                stl_le_p((char *)(reply + 1) +
                         rule->off % (size - sizeof(*reply) - 3), rule->val);
            }
            break;
        case FAKE_POKE8:
            if (size > sizeof(*reply)) {
                *((char *)(reply + 1) + rule->off % (size - sizeof(*reply))) =
                    rule->val;
            }
            break;
        case FAKE_ERROR:
            reply->flags |= VFIO_USER_ERROR;
            reply->error_reply = rule->val;
            break;
        case FAKE_ID:
            reply->id ^= rule->val;
            break;
        case FAKE_FLAGS:
            reply->flags = rule->val;
            break;
        case FAKE_DUP:
            dup = true;
            break;
        case FAKE_SHORT:
            close_after = true;
            send_len = rule->val % size;
            break;
        case FAKE_FDS:
            /* val 0: /dev/null; else a memfd of val % 64 KiB bytes */
            if (rule->val % 65536) {
                pass_fd = memfd_create("fake-vfio-user", MFD_CLOEXEC);
                if (pass_fd >= 0 &&
                    ftruncate(pass_fd, rule->val % 65536) < 0) {
                    close(pass_fd);
                    pass_fd = -1;
                }
            } else {
                pass_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            break;
        case FAKE_COMMAND:
            reply->command = rule->val;
            break;
        }
    }

    if (reply && !drop) {
        reply->size = lie_size >= 0 ? lie_size : size;
        send_len = close_after ? MIN(send_len, size) : size;
        send_buf(c, reply, send_len, pass_fd);
        if (dup && !close_after) {
            send_buf(c, reply, send_len, -1);
        }
    }
    if (pass_fd >= 0) {
        close(pass_fd);
    }
    return !close_after;
}

static void accept_one(int sock)
{
    int fd = accept4(srv.listen_fd[sock], NULL, NULL, SOCK_CLOEXEC);
    int i;

    if (fd < 0) {
        return;
    }
    for (i = 0; i < MAX_CONNS; i++) {
        if (!srv.conn[i]) {
            srv.conn[i] = g_new0(Conn, 1);
            srv.conn[i]->fd = fd;
            srv.conn[i]->sock = sock;
            device_init(srv.conn[i]);
            qemu_mutex_lock(&srv.lock);
            srv.nconns++;
            qemu_mutex_unlock(&srv.lock);
            return;
        }
    }
    close(fd);
}

static void *server_thread(void *opaque)
{
    for (;;) {
        struct pollfd pfd[1 + FAKE_SERVER_MAX_SOCKETS + MAX_CONNS];
        int map[MAX_CONNS];
        int n = 0, i, nc = 0;

        pfd[n].fd = srv.ctl[0];
        pfd[n++].events = POLLIN;
        for (i = 0; i < FAKE_SERVER_MAX_SOCKETS; i++) {
            pfd[n].fd = srv.listen_fd[i];
            pfd[n++].events = POLLIN;
        }
        for (i = 0; i < MAX_CONNS; i++) {
            if (srv.conn[i]) {
                map[nc++] = i;
                pfd[n].fd = srv.conn[i]->fd;
                pfd[n++].events = POLLIN;
            }
        }
        if (poll(pfd, n, -1) < 0) {
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            uint8_t sock;

            if (read(srv.ctl[0], &sock, 1) == 1) {
                for (i = 0; i < MAX_CONNS; i++) {
                    if (srv.conn[i] && srv.conn[i]->sock == sock) {
                        conn_close(i);
                    }
                }
                qemu_mutex_lock(&srv.lock);
                srv.close_done++;
                qemu_cond_broadcast(&srv.cond);
                qemu_mutex_unlock(&srv.lock);
            }
            continue;   /* the connection indexes may have changed */
        }
        for (i = 0; i < nc; i++) {
            if (pfd[1 + FAKE_SERVER_MAX_SOCKETS + i].revents &&
                !serve_one(map[i])) {
                conn_close(map[i]);
            }
        }
        for (i = 0; i < FAKE_SERVER_MAX_SOCKETS; i++) {
            if (pfd[1 + i].revents & POLLIN) {
                accept_one(i);
            }
        }
    }
    return NULL;
}

void fake_server_start(const char *dir)
{
    int i;

    qemu_mutex_init(&srv.lock);
    qemu_cond_init(&srv.cond);
    g_assert(pipe(srv.ctl) == 0);
    for (i = 0; i < FAKE_SERVER_MAX_SOCKETS; i++) {
        struct sockaddr_un addr = { .sun_family = AF_UNIX };

        srv.path[i] = g_strdup_printf("%s/vfu%d.sock", dir, i);
        g_assert(strlen(srv.path[i]) < sizeof(addr.sun_path));
        strcpy(addr.sun_path, srv.path[i]);
        unlink(srv.path[i]);
        srv.listen_fd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        g_assert(srv.listen_fd[i] >= 0);
        g_assert(bind(srv.listen_fd[i], (struct sockaddr *)&addr,
                      sizeof(addr)) == 0);
        g_assert(listen(srv.listen_fd[i], MAX_CONNS) == 0);
    }
    qemu_thread_create(&srv.thread, "fake-vfio-user", server_thread, NULL,
                       QEMU_THREAD_DETACHED);
}

const char *fake_server_socket(int i)
{
    return srv.path[i];
}

void fake_server_reset(const FakeServerRule *rules, int n)
{
    qemu_mutex_lock(&srv.lock);
    n = MIN(n, FAKE_SERVER_MAX_RULES);
    if (n > 0) {
        memcpy(srv.rules, rules, n * sizeof(*rules));
    }
    srv.nrules = n;
    memset(srv.count, 0, sizeof(srv.count));
    srv.total = 0;
    srv.closed = 0;
    qemu_mutex_unlock(&srv.lock);
}

void fake_server_close(int i)
{
    uint8_t sock = i;
    int want;

    qemu_mutex_lock(&srv.lock);
    want = srv.close_done + 1;
    qemu_mutex_unlock(&srv.lock);
    g_assert(write(srv.ctl[1], &sock, 1) == 1);
    qemu_mutex_lock(&srv.lock);
    while (srv.close_done < want) {
        qemu_cond_wait(&srv.cond, &srv.lock);
    }
    qemu_mutex_unlock(&srv.lock);
}

unsigned fake_server_take_closed(void)
{
    unsigned closed;

    qemu_mutex_lock(&srv.lock);
    closed = srv.closed;
    srv.closed = 0;
    qemu_mutex_unlock(&srv.lock);
    return closed;
}

int fake_server_connections(void)
{
    int n;

    qemu_mutex_lock(&srv.lock);
    n = srv.nconns;
    qemu_mutex_unlock(&srv.lock);
    return n;
}

uint64_t fake_server_messages(void)
{
    uint64_t n;

    qemu_mutex_lock(&srv.lock);
    n = srv.messages;
    qemu_mutex_unlock(&srv.lock);
    return n;
}
