/*  test_services.c — the one list of services (bus/bus_services.def)
    against the C that depends on it.

    Read with X-macros of its own, as test_config.c reads the key table:
    the lookups of bus_services.h; every service's config section in
    bus_config_keys.def (an rpc and a pub key each, and no section there
    that is not a service's or [sanctum]); every service's declared daemon
    (<prefix>_daemon, linked from its library) naming its own section; the
    start order (a service that waits for the others comes after them).
    The deployment files are checked against the same table by
    tests/integration/test_deploy_files.sh, the catalogue's owners by
    test_proto.c.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "bus_daemon.h"
#include "bus_services.h"
#include "../support/test_service.h"

/*  Every service's daemon, declared by its module as <prefix>_daemon. */
#define BUS_SERVICE(name, section, prefix, after, summary) extern const bus_daemon_t prefix##_daemon;
#include "bus_services.def"
#undef BUS_SERVICE

typedef struct {
    const char *name, *section, *prefix;
    const bus_daemon_t *daemon;
} s_row_t;

static const s_row_t s_rows [] = {
#define BUS_SERVICE(name, section, prefix, after, summary) { name, #section, #prefix, &prefix##_daemon },
#include "bus_services.def"
#undef BUS_SERVICE
};
#define NROWS (sizeof s_rows / sizeof s_rows [0])

typedef struct {
    const char *section, *key;
} s_key_t;

static const s_key_t s_keys [] = {
#define BUS_CONFIG_KEY(section, key, type, def, min, max, help) { #section, #key },
#include "bus_config_keys.def"
#undef BUS_CONFIG_KEY
};
#define NKEYS (sizeof s_keys / sizeof s_keys [0])

static bool
s_has_key (const char *section, const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (streq (s_keys [i].section, section) && streq (s_keys [i].key, key))
            return true;
    return false;
}

/*  The table, its count and its terminator; names and sections unique. */
static void
test_table (void **unused)
{
    size_t n = 0;
    while (bus_services [n].name)
        n++;
    assert_int_equal (n, NROWS);
    assert_int_equal (BUS_SERVICES_COUNT, NROWS);
    assert_true (NROWS > 0);
    for (size_t i = 0; i < n; i++) {
        const bus_service_id_t *s = &bus_services [i];
        assert_string_equal (s->name, s_rows [i].name);
        assert_string_equal (s->section, s_rows [i].section);
        assert_string_equal (s->prefix, s_rows [i].prefix);
        assert_true (s->summary && *s->summary);
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal (s->name, bus_services [j].name);
            assert_string_not_equal (s->section, bus_services [j].section);
            /* a name is never another service's section, or the lookups would be ambiguous */
            assert_string_not_equal (s->name, bus_services [j].section);
            assert_string_not_equal (s->section, bus_services [j].name);
        }
    }
}

/*  Name and section each lead to the entry; anything else to NULL. */
static void
test_lookups (void **unused)
{
    for (const bus_service_id_t *s = bus_services; s->name; s++) {
        assert_ptr_equal (bus_service_id (s->name), s);
        assert_ptr_equal (bus_service_id (s->section), s);
        assert_string_equal (bus_service_section (s->name), s->section);
        assert_string_equal (bus_service_name (s->section), s->name);
    }
    assert_string_equal (bus_service_section ("ciba-broker"), "ciba");
    assert_string_equal (bus_service_name ("vault"), "vault-broker");
    assert_null (bus_service_id ("sanctum"));
    assert_null (bus_service_id ("nobody"));
    assert_null (bus_service_id (""));
    assert_null (bus_service_id (NULL));
    assert_null (bus_service_name ("svc:authz"));
}

/*  Each service's section has its endpoints in bus_config_keys.def, and
    every section there is [sanctum] or a service's. */
static void
test_config_sections (void **unused)
{
    for (size_t i = 0; i < NROWS; i++) {
        if (!s_has_key (s_rows [i].section, "rpc") || !s_has_key (s_rows [i].section, "pub"))
            fail_msg ("bus_config_keys.def: [%s] lacks rpc or pub", s_rows [i].section);
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (!streq (s_keys [i].section, "sanctum") && !bus_service_id (s_keys [i].section))
            fail_msg ("bus_config_keys.def: [%s] %s: no such service in bus_services.def",
                      s_keys [i].section, s_keys [i].key);
        /* the config names the section, never the longer name */
        const bus_service_id_t *s = bus_service_id (s_keys [i].section);
        if (s && !streq (s->section, s_keys [i].section))
            fail_msg ("bus_config_keys.def: [%s] is a name; its section is [%s]",
                      s_keys [i].section, s->section);
    }
}

/*  <prefix>_daemon is each service's, for its own section. */
static void
test_daemons (void **unused)
{
    for (size_t i = 0; i < NROWS; i++) {
        const bus_daemon_t *d = s_rows [i].daemon;
        if (!d->section || !streq (d->section, s_rows [i].section))
            fail_msg ("%s_daemon.section is \"%s\", want \"%s\"", s_rows [i].prefix,
                      d->section ? d->section : "(null)", s_rows [i].section);
        for (const bus_timer_t *t = d->timers; t && t->fn; t++)
            assert_true (t->name && (t->interval_ms > 0 || t->interval_key));
    }
}

/*  A service that waits for the others starts after every one that does not. */
static void
test_start_order (void **unused)
{
    bool seen_waiting = false;
    for (const bus_service_id_t *s = bus_services; s->name; s++) {
        if (s->after_others)
            seen_waiting = true;
        else
        if (seen_waiting)
            fail_msg ("%s comes after a service that waits for all others", s->name);
    }
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_table),
        cmocka_unit_test (test_lookups),
        cmocka_unit_test (test_config_sections),
        cmocka_unit_test (test_daemons),
        cmocka_unit_test (test_start_order),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
