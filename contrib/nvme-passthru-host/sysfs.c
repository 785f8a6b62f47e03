/*
 * Reading and writing sysfs, procfs and device nodes under a root
 * folder ("/" on a host, a synthetic tree in the tests).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nvme-host.h"

static char root[PATH_MAX];

void nph_set_root(const char *r)
{
    size_t n;

    snprintf(root, sizeof(root), "%s", r ? r : "");
    /* "/" and "dir/" both become a prefix without a trailing slash */
    for (n = strlen(root); n > 0 && root[n - 1] == '/'; n--) {
        root[n - 1] = '\0';
    }
}

const char *nph_root(void)
{
    return root;
}

bool nph_use_root(const char *r, char *err, size_t size)
{
    if (!r || !r[0]) {
        return true;
    }
    if (access(r, F_OK) < 0) {
        snprintf(err, size, "--root %s: no such folder", r);
        return false;
    }
    nph_set_root(r);
    return true;
}

void nph_path(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(buf, size, "%s", root);

    if (n < 0 || (size_t)n >= size) {
        buf[size - 1] = '\0';
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf + n, size - n, fmt, ap);
    va_end(ap);
}

/* The first line of PATH, without its newline and trailing blanks */
bool nph_read_line(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    bool ok;
    size_t n;

    if (!f) {
        return false;
    }
    ok = fgets(buf, size, f) != NULL;
    fclose(f);
    if (!ok) {
        buf[0] = '\0';
        return true;            /* an empty file: an empty value */
    }
    buf[strcspn(buf, "\n")] = '\0';
    for (n = strlen(buf); n > 0 && isspace((unsigned char)buf[n - 1]); n--) {
        buf[n - 1] = '\0';
    }
    return true;
}

/*
 * Write VAL to the sysfs attribute PATH in one write(), as echo does.
 * The kernel answers a refused write with an error of write() itself.
 */
bool nph_write_str(const char *path, const char *val, char *err,
                   size_t errsize)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    size_t len = strlen(val);
    ssize_t n;

    if (fd < 0) {
        snprintf(err, errsize, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    n = write(fd, val, len);
    if (n < 0 || (size_t)n != len) {
        snprintf(err, errsize, "writing '%s' to %s: %s", val, path,
                 n < 0 ? strerror(errno) : "short write");
        close(fd);
        return false;
    }
    if (close(fd) < 0) {
        snprintf(err, errsize, "writing '%s' to %s: %s", val, path,
                 strerror(errno));
        return false;
    }
    return true;
}

/* The last component of the target of the symlink PATH */
bool nph_link_name(const char *path, char *buf, size_t size)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    const char *base;

    if (n < 0) {
        return false;
    }
    target[n] = '\0';
    base = strrchr(target, '/');
    snprintf(buf, size, "%s", base ? base + 1 : target);
    return true;
}

bool nph_dir_has_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    bool any = false;

    if (!d) {
        return false;
    }
    while (!any && (e = readdir(d))) {
        any = e->d_name[0] != '.';
    }
    closedir(d);
    return any;
}

/* "01:00.0" or "0000:01:00.0" -> "0000:01:00.0"; false if malformed */
bool nph_parse_bdf(const char *in, char *bdf, size_t size)
{
    unsigned dom = 0, bus, slot, fn;
    char extra;

    if (sscanf(in, "%x:%x:%x.%x%c", &dom, &bus, &slot, &fn, &extra) != 4) {
        dom = 0;
        if (sscanf(in, "%x:%x.%x%c", &bus, &slot, &fn, &extra) != 3) {
            return false;
        }
    }
    if (!isxdigit((unsigned char)in[0]) || dom > 0xffff || bus > 0xff ||
        slot > 0x1f || fn > 7) {
        return false;
    }
    snprintf(bdf, size, "%04x:%02x:%02x.%x", dom, bus, slot, fn);
    return true;
}

/* All of S is a number in BASE 10 or 16 ("0x" allowed in 16) */
bool nph_parse_u64(const char *s, int base, uint64_t *out)
{
    unsigned long long v;
    int n = -1;

    if (!isxdigit((unsigned char)s[0])) {
        return false;
    }
    if (base == 16) {
        sscanf(s, "%llx%n", &v, &n);
    } else {
        sscanf(s, "%llu%n", &v, &n);
    }
    if (n < 0 || s[n]) {
        return false;
    }
    *out = v;
    return true;
}
