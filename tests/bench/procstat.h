/*
 * procstat.h — CPU time and memory (peak and current) of a server's processes, read from /proc.
 *
 * partyd is a tree (supervisor, router, shards), so a sample covers the given pids and all their live descendants.
 * It counts utime + stime + cutime + cstime of each: a process's own field covers all its threads (RocksDB's
 * background threads included), and a child that exits and is reaped moves its time into its parent's c-fields, so
 * the total only grows and the difference of two samples is the CPU the tree used in between.
 */
#ifndef BENCH_PROCSTAT_H
#define BENCH_PROCSTAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct st_procstat_t {
    double cpu_s;    /* utime + stime + cutime + cstime, summed */
    uint64_t hwm_kb; /* VmHWM (peak resident set) summed over the processes: an upper bound of the tree's peak */
    uint64_t rss_kb; /* VmRSS (resident set now) summed: user-space memory only, not the kernel's socket buffers */
    unsigned procs;  /* how many processes were found */
} procstat_t;

/* Samples the pids and their descendants. Returns 0, or -ESRCH when none of the roots exists. */
int procstat_sample(const pid_t *roots, size_t nroots, procstat_t *out);

#endif
