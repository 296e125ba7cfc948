/*  bus_yaml.h — YAML (1.1, via libyaml) to jansson.

    Reads the first document of a YAML stream into a JSON value. Plain
    scalars are typed as YAML does: null (`null`, `Null`, `NULL`, `~`,
    empty), booleans (`true`/`false` in any of YAML's three casings),
    integers (decimal, 0x hex, 0o octal; values that overflow int64 stay
    strings), floats (including .inf/.nan, stored as strings because JSON has
    no such numbers). Quoted, literal (|) and folded (>) scalars, and scalars
    with an explicit tag, are always strings. Mapping keys must be scalars,
    unique, and free of NUL characters.

    Limits (each gives an error, never a crash): input size BUS_YAML_MAX_SIZE,
    nesting depth BUS_YAML_MAX_DEPTH, node count BUS_YAML_MAX_NODES. Aliases
    (`*name`) are rejected; anchors are accepted and ignored.

    Errors: BUS_EINVAL (syntax or unsupported construct), BUS_ETOOBIG,
    BUS_EDEPTH, BUS_EIO (file), BUS_ENOMEM. err receives a message with the
    1-based line and column when the problem has a position.
*/
#ifndef BUS_YAML_H
#define BUS_YAML_H

#include <jansson.h>
#include <stddef.h>

#define BUS_YAML_MAX_SIZE   (16u * 1024u * 1024u)   /* bytes of input */
#define BUS_YAML_MAX_DEPTH  64                      /* nested collections */
#define BUS_YAML_MAX_NODES  1000000                 /* scalars + collections */

/*  Parse len bytes of YAML text. On success returns 0 and *out (a new
    reference; JSON null for an empty stream). On failure *out is NULL. */
int bus_yaml_load_string (json_t **out, const char *text, size_t len,
                          char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Read and parse the file at path (same rules and results). */
int bus_yaml_load_file (json_t **out, const char *path,
                        char *err, size_t err_len)
    __attribute__((warn_unused_result));

#endif
