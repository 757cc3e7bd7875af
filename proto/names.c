/*
 * names.c — party names and room ids (see names.h).
 */
#include "names.h"

#include "base.h"

int names_party_valid(const char *s, size_t len)
{
    if (len == 0 || len > BASE_PARTY_MAX)
        return 0;
    for (size_t i = 0; i < len; ++i) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int names_room_valid(const char *s, size_t len)
{
    if (len == 0 || len > BASE_ROOM_MAX)
        return 0;
    for (size_t i = 0; i < len; ++i)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return base_utf8_valid(s, len);
}
