/* missing_function.c — a module that calls a function partyd does not have: it must fail at start (every symbol is
 * resolved when the module is loaded), never at the first request that would call it. */
#include "party.h"

int party_function_that_does_not_exist(party_room_t *room);

static int on_start(party_room_t *room)
{
    return party_function_that_does_not_exist(room);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "missing-function",
    .on_start = on_start,
};
