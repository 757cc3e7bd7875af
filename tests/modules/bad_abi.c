/* bad_abi.c — a module built for another party ABI: partyd must refuse it at start, naming both versions. */
#include "party.h"

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION + 1,
    .kind = "from-the-future",
};
