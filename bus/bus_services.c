/*  bus_services.c — the table of services, expanded from bus_services.def. */
#include "bus_services.h"

#include <stddef.h>
#include <string.h>

#define S_AFTER_NONE   false
#define S_AFTER_OTHERS true

const bus_service_id_t bus_services [] = {
#define BUS_SERVICE(name, section, prefix, after, summary) \
    { #section, name, #prefix, S_AFTER_##after, summary },
#include "bus_services.def"
#undef BUS_SERVICE
    { NULL, NULL, NULL, false, NULL }
};

/*  The entry whose name or section is name_or_section. */
const bus_service_id_t *
bus_service_id (const char *name_or_section)
{
    for (const bus_service_id_t *s = bus_services; name_or_section && s->name; s++)
        if (strcmp (s->name, name_or_section) == 0 || strcmp (s->section, name_or_section) == 0)
            return s;
    return NULL;
}

/*  The section of a name or section. */
const char *
bus_service_section (const char *name_or_section)
{
    const bus_service_id_t *s = bus_service_id (name_or_section);
    return s ? s->section : NULL;
}

/*  The name of a name or section. */
const char *
bus_service_name (const char *name_or_section)
{
    const bus_service_id_t *s = bus_service_id (name_or_section);
    return s ? s->name : NULL;
}
