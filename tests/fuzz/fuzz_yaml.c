/*  fuzz_yaml.c — libFuzzer target for bus_yaml_load_string.

    Any input: no crash, leak or read past the buffer (the input is given
    as is, without a terminating NUL). Success gives a value that jansson
    can serialise; failure gives no value.
*/
#include <stdint.h>
#include <stdlib.h>

#include "bus_yaml.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [256];
    json_t *value = NULL;
    int rc = bus_yaml_load_string (&value, (const char *) data, size, err, sizeof err);
    if (rc > 0 || (rc == 0) != (value != NULL))
        abort ();
    if (value) {
        char *text = json_dumps (value, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!text)
            abort ();
        free (text);
    }
    json_decref (value);
    return 0;
}
