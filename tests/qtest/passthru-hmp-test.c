/*
 * QTest testcase for the HMP command info passthru-hotplug: one screen
 * shows every port, its state, its device and backend, and the pending
 * operation with the time it has been pending
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "nvme-passthru/harness.h"

/* The line of @out that starts with @port's cell */
static char *line_of(const char *out, const char *port)
{
    g_auto(GStrv) lines = g_strsplit(out, "\r\n", -1);
    g_autofree char *start = g_strdup_printf("%s ", port);
    char **l;

    for (l = lines; *l; l++) {
        if (g_str_has_prefix(*l, start)) {
            return g_strdup(*l);
        }
    }
    g_test_message("no line for %s in: %s", port, out);
    g_assert_not_reached();
}

/* @line has exactly these cells, in order */
static void expect_cells(const char *line, const char *const *cells)
{
    g_auto(GStrv) words = g_strsplit_set(line, " ", -1);
    g_autoptr(GString) got = g_string_new("");
    g_autoptr(GString) exp = g_string_new("");
    char **w;

    for (w = words; *w; w++) {
        if (**w) {
            g_string_append_printf(got, "[%s]", *w);
        }
    }
    for (; *cells; cells++) {
        g_string_append_printf(exp, "[%s]", *cells);
    }
    g_assert_cmpstr(got->str, ==, exp->str);
}

static void test_ports(const void *data)
{
    Test *t = test_start(data, 2);
    const Mode *mode = data;
    g_autofree char *out = NULL;
    g_autofree char *head = NULL;
    g_autofree char *rp1 = NULL;
    g_autofree char *rp2 = NULL;
    g_autofree char *title = g_strdup_printf(
        "Passthrough hotplug: %s mode, 2 of 32 devices, 2 ports\r\n",
        mode->name);

    server_start(t, 0, SERVER_NVME);
    server_start(t, 1, SERVER_NVME);
    hot_add(t, 2, 1, "nvme1");
    add_start(t, 1, 0, "nvme0");
    /* The add has been pending for 1.5 s of the VM's time */
    qtest_clock_step(t->qts, MS_TO_NS(1500));

    out = qtest_hmp(t->qts, "info passthru-hotplug");
    g_test_message("%s", out);
    g_assert_true(g_str_has_prefix(out, title));
    head = line_of(out, "port");
    expect_cells(head, (const char *const[]) {
        "port", "chassis/slot", "state", "device", "transport", "backend",
        "pending", NULL });
    rp1 = line_of(out, "rp1");
    expect_cells(rp1, (const char *const[]) {
        "rp1", "1/0", "adding", "nvme0", "vfio-user", t->srv[0].sock,
        "add,", "1500", "ms", NULL });
    rp2 = line_of(out, "rp2");
    expect_cells(rp2, (const char *const[]) {
        "rp2", "2/0", "present", "nvme1", "vfio-user", t->srv[1].sock,
        "-", NULL });

    /* One screen: a title, the headings and a line a port */
    {
        g_auto(GStrv) lines = g_strsplit(out, "\r\n", -1);

        g_assert_cmpint(g_strv_length(lines), ==, 5);
        g_assert_cmpstr(lines[4], ==, "");
    }
    add_finish(t, 1, "nvme0");
    remove_start(t, 2, "nvme1");
    g_free(out);
    out = qtest_hmp(t->qts, "info passthru-hotplug");
    g_free(rp2);
    rp2 = line_of(out, "rp2");
    expect_cells(rp2, (const char *const[]) {
        "rp2", "2/0", "removing", "nvme1", "vfio-user", t->srv[1].sock,
        "remove,", "0", "ms", NULL });
    test_end(t);
}

static void test_no_port(const void *data)
{
    QTestState *qts = qtest_init("-machine q35 -nodefaults");
    g_autofree char *out = qtest_hmp(qts, "info passthru-hotplug");

    g_assert_cmpstr(out, ==, "Passthrough hotplug: off (no "
                    "pcie-hotplug-passthru port)\r\n");
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    int i;

    g_test_init(&argc, &argv, NULL);
    for (i = 0; i < N_MODES; i++) {
        g_autofree char *path = g_strdup_printf(
            "/passthru-hmp/%s/info-passthru-hotplug/ports-devices-pending",
            modes[i].name);

        qtest_add_data_func(path, &modes[i], test_ports);
    }
    qtest_add_data_func("/passthru-hmp/info-passthru-hotplug/no-port", NULL,
                        test_no_port);
    return g_test_run();
}
