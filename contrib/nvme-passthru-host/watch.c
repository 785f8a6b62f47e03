/* placeholder, replaced below */
#include <stdio.h>
#include "watch.h"

int nph_watch(const char *policy, const char *uevents, bool json,
              double timeout_s)
{
    fprintf(stderr, "watch: not implemented\n");
    return 1;
}
