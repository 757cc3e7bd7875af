/*
 * names.h — the naming rules of PartyKit's URL scheme, shared by what reads the config (config/read.c: party names)
 * and what routes requests (router/route.c: party names and room ids). Pure functions of their bytes.
 */
#ifndef PARTYD_NAMES_H
#define PARTYD_NAMES_H

#include <stddef.h>


/* Whether a party name is 1–BASE_PARTY_MAX (64) bytes of [A-Za-z0-9_-]. */
int names_party_valid(const char *s, size_t len);
/* Whether a room id (the raw path segment, still percent-encoded) is 1–256 bytes of valid UTF-8 without control
 * characters (1–BASE_ROOM_MAX: 256 bytes). */
int names_room_valid(const char *s, size_t len);

#endif
