/*  bus_services.h — the well-known services, from bus_services.def.

    One entry per service, in start order; see bus_services.def for what
    each column names. The table is constant data: any thread may read it.
*/
#ifndef BUS_SERVICES_H
#define BUS_SERVICES_H

#include <stdbool.h>

typedef struct {
    const char *section;          /* config section, catalogue owner: "ciba" */
    const char *name;             /* binary / key / principal name: "ciba-broker" */
    const char *prefix;           /* C prefix, without the underscore: "ciba" */
    bool after_others;            /* starts once every other service is up */
    const char *summary;          /* what it does, in a few words */
} bus_service_id_t;

/*  Every service, in start order, terminated by an entry whose name is NULL. */
extern const bus_service_id_t bus_services [];

/*  How many services bus_services lists (a constant expression). */
enum { BUS_SERVICES_COUNT = 0
#define BUS_SERVICE(name, section, prefix, after, summary) + 1
#include "bus_services.def"
#undef BUS_SERVICE
};

/*  Section for a name or section ("ciba-broker" or "ciba" -> "ciba"), or NULL. */
const char *bus_service_section (const char *name_or_section);
/*  Name for a section or name ("ciba" -> "ciba-broker"), or NULL. */
const char *bus_service_name (const char *name_or_section);
/*  The entry for a name or section, or NULL. */
const bus_service_id_t *bus_service_id (const char *name_or_section);

#endif
