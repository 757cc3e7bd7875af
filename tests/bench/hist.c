/*
 * hist.c — see hist.h. The layout: below 2^SUB_BITS, index = value. Above, with m the position of the value's top
 * bit and shift = m - (SUB_BITS - 1), the top SUB_BITS bits of the value (sub, in [HALF, 2*HALF)) pick the bucket:
 * index = shift * HALF + sub. Consecutive shifts tile the index range without gaps, so the array is dense.
 */
#include <math.h>
#include <string.h>

#include "hist.h"

void hist_init(hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned hist_index(uint64_t v)
{
    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    unsigned top = 63 - (unsigned)__builtin_clzll(v);
    unsigned shift = top - (HIST_SUB_BITS - 1);
    return shift * HIST_HALF + (unsigned)(v >> shift);
}

uint64_t hist_bucket_high(unsigned index)
{
    if (index < (1u << HIST_SUB_BITS))
        return index;
    unsigned shift = index / HIST_HALF - 1;
    uint64_t sub = index % HIST_HALF + HIST_HALF;
    /* for the last bucket (sub + 1) << shift wraps to 0, and minus one gives 2^64 - 1, its true high end */
    return ((sub + 1) << shift) - 1;
}

void hist_record(hist_t *h, uint64_t v)
{
    ++h->buckets[hist_index(v)];
    ++h->count;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist_t *dst, const hist_t *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; ++i)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    if (src->count != 0) {
        if (src->min < dst->min)
            dst->min = src->min;
        if (src->max > dst->max)
            dst->max = src->max;
    }
}

uint64_t hist_percentile(const hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    if (!(p > 0))
        return h->min;
    if (p >= 100)
        return h->max;
    /* p * count first: 99 * 100 / 100 is exactly 99, while 0.99 * 100 is not; the epsilon absorbs what remains */
    uint64_t rank = (uint64_t)ceil(p * (double)h->count / 100.0 - 1e-9);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; ++i) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            if (v < h->min)
                v = h->min;
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
