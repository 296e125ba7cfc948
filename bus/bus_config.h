/*  bus_config.h — configuration: one table of keys, a file, env overrides.

    Every key is declared once in bus_config_keys.def with its default and
    bounds. Values come from, in rising priority: the default, the INI file
    ([section] key = value), the environment SANCTUM_<SECTION>_<KEY>.
    An unknown section/key in the file, a value out of bounds or of the
    wrong type is BUS_ECONFIG with a message naming file, line and key.

    Limits: a file is at most 1 MiB with lines of at most 197 bytes (inih's
    buffer); a STR value is at most 160 bytes, without control characters,
    leading/trailing blanks or " ;" (so that bus_config_write output always
    reloads to the same values). Indented continuation lines are rejected.
    INT values are decimal; BOOL accepts true/false, yes/no, on/off, 1/0.

    Paths (keys of type PATH: data_dir, keys_dir, allow_dir, authz policy):
    a relative path written in a config file is relative to that file's
    folder, and is made absolute as the file is read, so the same file
    works from any working directory. The built-in defaults ("./var", ...)
    and environment values stay relative to the working directory; so does
    the default of a path key a file leaves out.
*/
#ifndef BUS_CONFIG_H
#define BUS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct bus_config_t bus_config_t;

/*  Load: path may be NULL (defaults + env only). A missing file at a given
    path is an error. On error *out is NULL and err holds the reason. */
int bus_config_load (bus_config_t **out, const char *path, char *err, size_t err_len)
    __attribute__((warn_unused_result));

void bus_config_destroy (bus_config_t **self_p);

/*  Value of a declared key; asserts the key is declared (a programmer
    mistake otherwise) and, for _int and _bool, of that type. _str works
    for every type and gives the normalised text ("2048", "true").
    Strings are owned by the config. */
const char *bus_config_str (bus_config_t *self, const char *section, const char *key);
long bus_config_int (bus_config_t *self, const char *section, const char *key);
bool bus_config_bool (bus_config_t *self, const char *section, const char *key);

/*  Override a value (validated like a file value); for tests and the CLI. */
int bus_config_set (bus_config_t *self, const char *section, const char *key,
                    const char *value, char *err, size_t err_len);

/*  Write the effective config as an INI file (every key, with help
    comments), paths as they are. */
int bus_config_write (bus_config_t *self, FILE *out);

/*  Write the config to the file at path (created or replaced; its folder
    must exist), paths relative to that folder when they lie under it,
    else absolute, so that loading the file gives the same paths from any
    working directory. Returns 0, BUS_EIO or BUS_ENOMEM. */
int bus_config_write_file (bus_config_t *self, const char *path);

/*  Path of the service's data directory: <data_dir>/<service>; caller frees. */
char *bus_config_data_dir (bus_config_t *self, const char *service);

#endif
