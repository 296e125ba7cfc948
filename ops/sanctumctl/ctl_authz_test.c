/*  ctl_authz_test.c — `sanctumctl authz test FILE`.

    Not built yet: running OpenFGA test files (conformance format and the
    .fga.yaml store format) is under way; until it lands this command says
    so and exits 1.
*/
#include "ctl.h"

#include <stdio.h>

int
ctl_cmd_authz_test (ctl_t *ctl)
{
    fprintf (stderr, "sanctumctl: authz test is not implemented yet\n");
    return CTL_ERROR;
}
