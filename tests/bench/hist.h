/*
 * hist.h — a fixed-size latency histogram (log-linear buckets, as HdrHistogram lays them out).
 *
 * Values are unsigned 64-bit (partyload records nanoseconds). Values below 2^HIST_SUB_BITS are kept exactly; above,
 * each power of two is cut into 2^(HIST_SUB_BITS-1) equal buckets, so a reported value is within 1/128 (0.8 %) of
 * what was recorded. Recording is an index computation and an increment: no allocation, whatever the range, which is
 * what a load generator needs on its hot path.
 *
 * The struct is about 60 KiB: embed it in a long-lived object or allocate it once; do not put it on a small stack.
 * Not thread-safe (partyload has one thread).
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 8
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
/* indexes 0 .. 2^SUB_BITS-1 are exact; then (64 - SUB_BITS) groups of HALF buckets each */
#define HIST_BUCKETS ((66 - HIST_SUB_BITS) * HIST_HALF)

typedef struct st_hist_t {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
} hist_t;

/* Empties the histogram. */
void hist_init(hist_t *h);
/* Adds one value. */
void hist_record(hist_t *h, uint64_t v);
/* Adds every value of `src` to `dst`. */
void hist_merge(hist_t *dst, const hist_t *src);
/*
 * The value at percentile `p` (0–100) by the nearest-rank definition: the smallest recorded value v such that at
 * least p % of the values are <= v. The answer is the highest value of v's bucket, clamped to [min, max], so p=0
 * gives the exact minimum and p=100 the exact maximum. An empty histogram answers 0.
 */
uint64_t hist_percentile(const hist_t *h, double p);

/* Exposed for the unit test: the bucket of a value, and the highest value that falls in a bucket. */
unsigned hist_index(uint64_t v);
uint64_t hist_bucket_high(unsigned index);

#endif
