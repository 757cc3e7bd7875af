/* aborts.c — a module whose constructor calls abort() as it is loaded: partyd must refuse to start, naming the module,
 * instead of its supervisor dying without a word (shard/module.c loads a module in a child first). */
#include <stdlib.h>

#include "party.h"

__attribute__((constructor)) static void aborts_on_load(void)
{
    abort();
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "aborts",
};
