/*
 * Does the host use an NVMe controller?  Its namespaces and their
 * partitions are checked for: a mounted file system (mountinfo, by
 * device number and by source), swap, holders (LVM, MD, device-mapper,
 * multipath; followed to what uses the holder), and processes holding
 * the namespace, a partition or the controller's character device
 * open.
 *
 * Open files are found by scanning /proc/PID/fd, not by an O_EXCL open
 * probe: an exclusive open only fails against another exclusive claim
 * (a mount, a holder, swap, another O_EXCL opener), so it misses a
 * plain open by dd, a backup tool, a database or another QEMU; and it
 * says "busy" where the scan names the process.  The scan needs root
 * to see other users' processes, which enable needs anyway.
 *
 * With native NVMe multipath (Debian's default) a namespace's block
 * device is the subsystem's head, under
 * /sys/devices/virtual/nvme-subsystem/nvme-subsysN/nvmeNnM, and the
 * controller only has the path nvmeNcXnM: the head is what is mounted.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "nvme-host.h"

#define MAX_DEPTH 4             /* holders of holders of ... */

typedef struct OpenFile {
    long pid;
    char comm[32];
    char target[128];
    dev_t rdev;                 /* 0 when unknown */
    bool is_blk, is_chr;
} OpenFile;

typedef struct Scan {
    OpenFile *files;
    int n, cap;
} Scan;

static void NPH_PRINTF_LIKE(2, 3) add_reason(NphUse *use, const char *fmt, ...)
{
    va_list ap;
    int i;
    char buf[NPH_REASON_LEN];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    for (i = 0; i < use->n; i++) {
        if (!strcmp(use->why[i], buf)) {
            return;             /* the same reason by two ways */
        }
    }
    if (use->n < NPH_MAX_REASONS) {
        snprintf(use->why[use->n++], NPH_REASON_LEN, "%s", buf);
    }
}

void nph_use_join(const NphUse *use, char *buf, size_t size)
{
    size_t len = 0;
    int i;

    buf[0] = '\0';
    for (i = 0; i < use->n && len < size; i++) {
        len += snprintf(buf + len, size - len, "%s%s", i ? "; " : "",
                        use->why[i]);
    }
}

/* Every open file of every process that is a /dev node */
static void scan_fds(Scan *s)
{
    char dir[PATH_MAX], fddir[PATH_MAX], link[PATH_MAX], path[PATH_MAX];
    DIR *procs, *fds;
    struct dirent *p, *f;
    bool real = !nph_root()[0];

    nph_path(dir, sizeof(dir), "/proc");
    procs = opendir(dir);
    while (procs && (p = readdir(procs))) {
        char comm[32] = "?";
        uint64_t pid;

        if (!nph_parse_u64(p->d_name, 10, &pid) || pid == (uint64_t)getpid()) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s/comm", dir, p->d_name);
        nph_read_line(path, comm, sizeof(comm));
        snprintf(fddir, sizeof(fddir), "%s/%s/fd", dir, p->d_name);
        fds = opendir(fddir);
        while (fds && (f = readdir(fds))) {
            OpenFile *o;
            struct stat st;
            ssize_t n;

            if (f->d_name[0] == '.') {
                continue;
            }
            snprintf(path, sizeof(path), "%s/%s", fddir, f->d_name);
            n = readlink(path, link, sizeof(link) - 1);
            if (n < 5) {
                continue;
            }
            link[n] = '\0';
            if (strncmp(link, "/dev/", 5)) {
                continue;
            }
            if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 64;
                s->files = realloc(s->files, s->cap * sizeof(*s->files));
                if (!s->files) {
                    abort();
                }
            }
            o = &s->files[s->n++];
            memset(o, 0, sizeof(*o));
            o->pid = pid;
            snprintf(o->comm, sizeof(o->comm), "%s", comm);
            snprintf(o->target, sizeof(o->target), "%s", link);
            /*
             * On the host itself, the node the fd refers to, whatever
             * name it had in the process's mount namespace.  (In a
             * synthetic tree the link would lead out of it.)
             */
            if (real && stat(path, &st) == 0) {
                o->rdev = st.st_rdev;
                o->is_blk = S_ISBLK(st.st_mode);
                o->is_chr = S_ISCHR(st.st_mode);
            }
        }
        if (fds) {
            closedir(fds);
        }
    }
    if (procs) {
        closedir(procs);
    }
}

/* The device number in the sysfs folder DIR's "dev" attribute */
static bool read_devnum(const char *dir, unsigned *maj, unsigned *min)
{
    char path[PATH_MAX], val[32];

    snprintf(path, sizeof(path), "%s/dev", dir);
    return nph_read_line(path, val, sizeof(val)) &&
        sscanf(val, "%u:%u", maj, min) == 2;
}

/* Processes holding /dev/NAME open (the node in DIR, BLOCK or char) */
static void check_open(Scan *s, const char *dir, const char *name,
                       bool block, NphUse *use)
{
    char dev[64];
    unsigned maj, min;
    bool have = read_devnum(dir, &maj, &min);
    int i;

    snprintf(dev, sizeof(dev), "/dev/%s", name);
    for (i = 0; i < s->n; i++) {
        OpenFile *o = &s->files[i];
        bool same = !strcmp(o->target, dev) ||
            (have && o->rdev && (block ? o->is_blk : o->is_chr) &&
             major(o->rdev) == maj && minor(o->rdev) == min);

        if (same) {
            add_reason(use, "%s is open in process %ld (%s)", dev, o->pid,
                       o->comm);
        }
    }
}

static const char *mount_role(const char *mp)
{
    if (!strcmp(mp, "/")) {
        return " (the root file system)";
    }
    if (!strcmp(mp, "/boot") || !strcmp(mp, "/boot/efi")) {
        return " (the boot disk)";
    }
    return "";
}

/* mountinfo escapes blanks as \040 */
static void unescape(char *s)
{
    char *out = s;
    unsigned v;

    while (*s) {
        if (s[0] == '\\' && sscanf(s + 1, "%3o", &v) == 1 &&
            isdigit((unsigned char)s[1])) {
            *out++ = v;
            s += 4;
        } else {
            *out++ = *s++;
        }
    }
    *out = '\0';
}

/* Where the block device NAME (MAJ:MIN) is mounted; false if nowhere */
static bool find_mount(const char *name, unsigned maj, unsigned min,
                       bool have, char *mp, size_t size)
{
    char path[PATH_MAX], line[4096], dev[64];
    FILE *f;
    bool found = false;

    snprintf(dev, sizeof(dev), "/dev/%s", name);
    nph_path(path, sizeof(path), "/proc/self/mountinfo");
    f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof(line), f)) {
        unsigned ma, mi;
        char point[2048], fstype[64], source[1024];
        const char *sep = strstr(line, " - ");

        if (sscanf(line, "%*u %*u %u:%u %*s %2047s", &ma, &mi, point) != 3) {
            continue;
        }
        source[0] = '\0';
        if (sep) {
            sscanf(sep + 3, "%63s %1023s", fstype, source);
        }
        /* btrfs shows an anonymous device number: match the source too */
        if ((have && ma == maj && mi == min) || !strcmp(source, dev)) {
            unescape(point);
            snprintf(mp, size, "%s", point);
            found = true;
        }
    }
    if (f) {
        fclose(f);
    }
    return found;
}

static bool is_swap(const char *name)
{
    char path[PATH_MAX], line[1024], file[1024], dev[64];
    FILE *f;
    bool found = false;

    snprintf(dev, sizeof(dev), "/dev/%s", name);
    nph_path(path, sizeof(path), "/proc/swaps");
    f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof(line), f)) {
        found = sscanf(line, "%1023s", file) == 1 && !strcmp(file, dev);
    }
    if (f) {
        fclose(f);
    }
    return found;
}

/* What the holder HOLDER (dm-0, md127) is: "LVM vg0-root", "MD raid1" */
static void holder_kind(const char *holder, char *buf, size_t size)
{
    char path[PATH_MAX], name[128], uuid[160], level[32];

    nph_path(path, sizeof(path), "/sys/block/%s/dm/name", holder);
    if (nph_read_line(path, name, sizeof(name))) {
        nph_path(path, sizeof(path), "/sys/block/%s/dm/uuid", holder);
        if (!nph_read_line(path, uuid, sizeof(uuid))) {
            uuid[0] = '\0';
        }
        snprintf(buf, size, "%s %s",
                 !strncmp(uuid, "LVM-", 4) ? "LVM" :
                 !strncmp(uuid, "mpath-", 6) ? "multipath" :
                 !strncmp(uuid, "CRYPT-", 6) ? "dm-crypt" : "device-mapper",
                 name);
        return;
    }
    nph_path(path, sizeof(path), "/sys/block/%s/md/level", holder);
    if (nph_read_line(path, level, sizeof(level))) {
        snprintf(buf, size, "MD %s", level);
        return;
    }
    snprintf(buf, size, "a block device");
}

static void check_block(Scan *s, const char *dir, const char *name,
                        NphUse *use, int depth);

/* A partition of NAME: a sub-folder NAMEpN or NAMEN with "partition" */
static bool is_partition(const char *dir, const char *name,
                         const char *entry)
{
    char path[PATH_MAX];

    if (strncmp(entry, name, strlen(name)) || !entry[strlen(name)]) {
        return false;
    }
    snprintf(path, sizeof(path), "%s/%s/partition", dir, entry);
    return access(path, F_OK) == 0;
}

static void check_holders(Scan *s, const char *dir, const char *name,
                          NphUse *use, int depth)
{
    char path[PATH_MAX], kind[192];
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof(path), "%s/holders", dir);
    d = opendir(path);
    while (d && (e = readdir(d))) {
        NphUse sub = { 0 };
        char hdir[PATH_MAX];

        if (e->d_name[0] == '.') {
            continue;
        }
        holder_kind(e->d_name, kind, sizeof(kind));
        nph_path(hdir, sizeof(hdir), "/sys/block/%s", e->d_name);
        if (depth < MAX_DEPTH) {
            check_block(s, hdir, e->d_name, &sub, depth + 1);
        }
        add_reason(use, "%s is held by %s (%s)%s%s", name, e->d_name, kind,
                   sub.n ? ": " : "", sub.n ? sub.why[0] : "");
    }
    if (d) {
        closedir(d);
    }
}

/* The block device NAME, sysfs folder DIR, and its partitions */
static void check_block(Scan *s, const char *dir, const char *name,
                        NphUse *use, int depth)
{
    char mp[1024], path[PATH_MAX];
    unsigned maj = 0, min = 0;
    bool have = read_devnum(dir, &maj, &min);
    DIR *d;
    struct dirent *e;

    if (find_mount(name, maj, min, have, mp, sizeof(mp))) {
        add_reason(use, "/dev/%s is mounted on %s%s", name, mp,
                   mount_role(mp));
    }
    if (is_swap(name)) {
        add_reason(use, "/dev/%s is in use as swap", name);
    }
    check_holders(s, dir, name, use, depth);
    check_open(s, dir, name, true, use);
    d = opendir(dir);
    while (d && (e = readdir(d))) {
        if (is_partition(dir, name, e->d_name)) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            check_block(s, path, e->d_name, use, depth);
        }
    }
    if (d) {
        closedir(d);
    }
}

/* The folder of the multipath head NAME: /sys/block or the subsystems */
static bool find_head(const char *name, char *dir, size_t size)
{
    char path[PATH_MAX], sub[PATH_MAX];
    DIR *d;
    struct dirent *e;
    bool found = false;

    nph_path(dir, size, "/sys/block/%s", name);
    if (access(dir, F_OK) == 0) {
        return true;
    }
    nph_path(path, sizeof(path), "/sys/devices/virtual/nvme-subsystem");
    d = opendir(path);
    while (d && !found && (e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s/%s", path, e->d_name, name);
        if (access(sub, F_OK) == 0) {
            snprintf(dir, size, "%s", sub);
            found = true;
        }
    }
    if (d) {
        closedir(d);
    }
    return found;
}

static void check_controller(Scan *s, const char *cdir, const char *ctrl,
                             NphUse *use)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *e;

    check_open(s, cdir, ctrl, false, use);
    d = opendir(cdir);
    while (d && (e = readdir(d))) {
        unsigned subsys, cntl, ns;
        char head[32], extra;

        if (sscanf(e->d_name, "nvme%uc%un%u%c", &subsys, &cntl, &ns,
                   &extra) == 3) {
            /* A path of a multipath namespace: the disk is its head */
            snprintf(head, sizeof(head), "nvme%un%u", subsys, ns);
            if (find_head(head, path, sizeof(path))) {
                check_block(s, path, head, use, 0);
            }
        } else if (sscanf(e->d_name, "nvme%un%u%c", &subsys, &ns,
                          &extra) == 2) {
            snprintf(path, sizeof(path), "%s/%s", cdir, e->d_name);
            check_block(s, path, e->d_name, use, 0);
        } else if (sscanf(e->d_name, "ng%un%u%c", &subsys, &ns,
                          &extra) == 2) {
            /* A namespace's generic character device (io_uring, SPDK) */
            snprintf(path, sizeof(path), "%s/%s", cdir, e->d_name);
            check_open(s, path, e->d_name, false, use);
        }
    }
    if (d) {
        closedir(d);
    }
}

bool nph_nvme_in_use(const char *bdf, NphUse *use)
{
    char path[PATH_MAX], cdir[PATH_MAX];
    Scan s = { 0 };
    DIR *d;
    struct dirent *e;

    memset(use, 0, sizeof(*use));
    nph_path(path, sizeof(path), "/sys/bus/pci/devices/%s/nvme", bdf);
    d = opendir(path);
    if (!d) {
        return false;           /* no nvme driver on it: nothing to use */
    }
    scan_fds(&s);
    while ((e = readdir(d))) {
        unsigned n;
        char extra;

        if (sscanf(e->d_name, "nvme%u%c", &n, &extra) == 1) {
            snprintf(cdir, sizeof(cdir), "%s/%s", path, e->d_name);
            check_controller(&s, cdir, e->d_name, use);
        }
    }
    closedir(d);
    free(s.files);
    return use->n > 0;
}
