/*
 * suggest.c — "did you mean": the valid key nearest to a misspelt one (see config.h).
 */
#include "config.h"

#include <string.h>

/* Edit distance (insert, delete, substitute, swap two neighbours), capped at keys of 63 bytes. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return (size_t)-1;
    size_t d[64][64];
    for (size_t i = 0; i <= la; ++i)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; ++j)
        d[0][j] = j;
    for (size_t i = 1; i <= la; ++i)
        for (size_t j = 1; j <= lb; ++j) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

const char *config_suggest(const char *key, const char *const *known)
{
    /* a third of the key's length, at least 2: "parites" finds "parties", "x" finds nothing */
    size_t len = strlen(key), cap = len / 3 > 2 ? len / 3 : 2, best = cap + 1;
    const char *found = NULL;
    for (size_t i = 0; known[i] != NULL; ++i) {
        size_t d = distance(key, known[i]), lk = strlen(known[i]);
        /* a unit left off or added ("idle" for "idle_ms") is near whatever its length */
        if (len >= 3 && lk >= 3 && strncmp(key, known[i], len < lk ? len : lk) == 0)
            d = 1;
        if (d < best) {
            best = d;
            found = known[i];
        }
    }
    return found;
}
