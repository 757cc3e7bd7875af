/* no_symbol.c — a shared object that is not a party: it defines no partyd_party. partyd must refuse it at start. */
#include "party.h"

PARTY_EXPORT int not_a_party(void);
PARTY_EXPORT int not_a_party(void)
{
    return 42;
}
