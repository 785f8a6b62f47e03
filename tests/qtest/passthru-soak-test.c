/*
 * QTest soak of NVMe passthrough hotplug: the same device added and
 * removed over and over, and QEMU's memory and file descriptors checked
 *
 * Each test starts one q35 VM with one pcie-hotplug-passthru port and
 * then, cycle after cycle, hot-adds "the same device" (id nvme0, port
 * rp1, socket and backing image of server slot 0; a vfio-user server
 * exits when its client goes, so each cycle starts a new one) and
 * removes it:
 *
 *   orderly    device_del, the guest ejects (ACPI B0EJ / native slot
 *              power off)
 *   surprise   alternately device_del on a port with removal=surprise
 *              and kill -9 of the server (host-gone), then the guest
 *              acknowledges the removal
 *
 * After a few warm-up cycles (one-time allocations: the first device,
 * hash tables growing, the vfio-user thread) it reads QEMU's VmRSS and
 * counts its open fds, runs the measured cycles and reads them again.
 * The test fails when QEMU holds one more fd than before or its RSS
 * grew by PASSTHRU_SOAK_RSS_KIB (16) KiB or more per cycle.  Under
 * AddressSanitizer the RSS is printed, not checked: ASan keeps freed
 * memory in quarantine; its LeakSanitizer checks leaks instead.
 *
 * Environment: PASSTHRU_SOAK_CYCLES (measured orderly cycles per mode,
 * default 40), PASSTHRU_SOAK_SURPRISE_CYCLES (measured surprise cycles
 * per mode, default 20), PASSTHRU_SOAK_WARMUP (default 5).  make soak
 * runs 1000 and 100.  Each test prints one line for scripts/soak.sh:
 *
 *   SOAK qtest/acpi/orderly cycles=40 rss_start=... rss_end=... ...
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/wait.h>
#include "qemu/cutils.h"
#include "nvme-passthru/harness.h"

#define RSS_PER_CYCLE_MAX_KIB   16

typedef struct Usage {
    long rss_kib;
    int fds;
} Usage;

static long env_long(const char *name, long dflt)
{
    const char *v = g_getenv(name);
    long n;

    if (!v || !*v) {
        return dflt;
    }
    g_assert_cmpint(qemu_strtol(v, NULL, 10, &n), ==, 0);
    g_assert_cmpint(n, >=, 0);
    return n;
}

static long rss_kib(Test *t)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status",
                                            qtest_pid(t->qts));
    g_autofree char *status = NULL;
    g_autoptr(GError) err = NULL;
    const char *rss, *end;
    long kib;

    g_assert_true(g_file_get_contents(path, &status, NULL, &err));
    g_assert_no_error(err);
    rss = strstr(status, "\nVmRSS:");
    g_assert_nonnull(rss);
    g_assert_cmpint(qemu_strtol(rss + strlen("\nVmRSS:"), &end, 10, &kib),
                    ==, 0);
    return kib;
}

static Usage usage(Test *t)
{
    g_autofree char *fd_path = g_strdup_printf("/proc/%d/fd",
                                               qtest_pid(t->qts));
    g_autoptr(GError) err = NULL;
    Usage u = { 0 };
    GDir *dir;

    /* Let the RCU thread finish freeing what the last cycle released */
    events_sync(t);
    g_usleep(100 * 1000);
    events_sync(t);

    u.rss_kib = rss_kib(t);
    dir = g_dir_open(fd_path, 0, &err);
    g_assert_no_error(err);
    while (g_dir_read_name(dir)) {
        u.fds++;
    }
    g_dir_close(dir);
    return u;
}

/*
 * A new server in slot @i for the same device: the same socket path and
 * backing image.  The previous one must have gone by itself (it exits
 * when its client disconnects) or been killed.
 */
static void server_again(Test *t, int i)
{
    Server *s = &t->srv[i];

    if (s->pid) {
        g_assert_true(server_wait_exit(s));
        server_stop(s);
    }
    if (s->sock) {
        /* server_start() waits for the socket file to appear */
        unlink(s->sock);
        g_clear_pointer(&s->sock, g_free);
    }
    server_start(t, i, SERVER_NVME);
}

static void cycle_orderly(Test *t, long i)
{
    server_again(t, 0);
    hot_add(t, 1, 0, "nvme0");
    remove_orderly(t, 1, "nvme0");
}

/* Odd cycles: removal=surprise + device_del; even: the server dies */
static void cycle_surprise(Test *t, long i)
{
    server_again(t, 0);
    hot_add(t, 1, 0, "nvme0");
    if (i % 2) {
        remove_surprise(t, 1, "nvme0");
    } else {
        server_kill(&t->srv[0]);
        expect_surprise_removal(t, 1, "nvme0", "host-gone",
                                "vfio-user server closed the connection");
    }
    guest_ack_gone(t, 1);
}

static void soak(const Mode *mode, const char *kind, long cycles,
                 void (*cycle)(Test *t, long i))
{
    long warmup = env_long("PASSTHRU_SOAK_WARMUP", 5);
    Test *t = test_start(mode, 1);
    g_autoptr(GString) steps = g_string_new("");
    int nsteps = 0;
    gint64 t0, t1;
    Usage start, end;
    double per_cycle;
    long i, last;

    if (cycle == cycle_surprise) {
        port_set(t, 1, "removal", QOBJECT(qstring_from_str("surprise")));
    }
    for (i = 0; i < warmup; i++) {
        cycle(t, i);
    }
    start = usage(t);
    t0 = g_get_monotonic_time();
    last = start.rss_kib;
    for (i = 0; i < cycles; i++) {
        long rss;

        cycle(t, warmup + i);
        /* Where the RSS moved: a steady leak, or a few steps of the heap */
        rss = rss_kib(t);
        if (rss != last && ++nsteps <= 20) {
            g_string_append_printf(steps, " %ld:%+ld", i + 1, rss - last);
        }
        last = rss;
    }
    t1 = g_get_monotonic_time();
    end = usage(t);

    per_cycle = cycles ? (double)(end.rss_kib - start.rss_kib) / cycles : 0;
    g_test_message("%s/%s: %ld cycles after %ld warm-up in %.1f s "
                   "(%.0f ms/cycle): QEMU RSS %ld -> %ld KiB "
                   "(%+.2f KiB/cycle), open fds %d -> %d",
                   mode->name, kind, cycles, warmup,
                   (t1 - t0) / 1e6, cycles ? (t1 - t0) / 1e3 / cycles : 0,
                   start.rss_kib, end.rss_kib, per_cycle,
                   start.fds, end.fds);
    g_test_message("%s/%s: RSS changed after %d cycles (cycle:KiB):%s%s",
                   mode->name, kind, nsteps, nsteps ? steps->str : " none",
                   nsteps > 20 ? " ..." : "");
    g_test_message("SOAK qtest/%s/%s cycles=%ld rss_start=%ld rss_end=%ld "
                   "fds_start=%d fds_end=%d rss_per_cycle=%.2f"
#ifdef QEMU_SANITIZE_ADDRESS
                   " asan=1"
#endif
                   , mode->name, kind, cycles, start.rss_kib, end.rss_kib,
                   start.fds, end.fds, per_cycle);

    g_assert_cmpint(end.fds, ==, start.fds);
#ifndef QEMU_SANITIZE_ADDRESS
    g_assert_cmpfloat(per_cycle, <, RSS_PER_CYCLE_MAX_KIB);
#endif
    test_end(t);
}

static void test_orderly(const void *data)
{
    soak(data, "orderly", env_long("PASSTHRU_SOAK_CYCLES", 40),
         cycle_orderly);
}

static void test_surprise(const void *data)
{
    soak(data, "surprise", env_long("PASSTHRU_SOAK_SURPRISE_CYCLES", 20),
         cycle_surprise);
}

int main(int argc, char **argv)
{
    int i;

    g_test_init(&argc, &argv, NULL);

    for (i = 0; i < ARRAY_SIZE(modes); i++) {
        const Mode *m = &modes[i];

        add_test(m, "soak/orderly/no-fd-or-memory-growth", test_orderly);
        add_test(m, "soak/surprise/no-fd-or-memory-growth", test_surprise);
    }
    return g_test_run();
}
