/*
 * procstat.c — see procstat.h.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

#define PROCSTAT_MAX 4096 /* processes considered per sample; a server tree is far smaller */

typedef struct st_proc_entry_t {
    pid_t pid;
    pid_t ppid;
} proc_entry_t;

/* Reads /proc/PID/stat. Returns 0, or -1 when the process is gone or the file is not what we expect. */
static int read_stat(pid_t pid, pid_t *ppid, unsigned long long *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name is in parentheses and may hold anything, parentheses included: skip to the last ')' */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* fields from 3 (state): state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
     * cutime cstime */
    char state;
    int pp;
    unsigned long long utime, stime;
    long long cutime, cstime;
    if (sscanf(p + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &state, &pp, &utime, &stime, &cutime,
               &cstime) != 6)
        return -1;
    *ppid = pp;
    if (ticks != NULL)
        *ticks = utime + stime + (unsigned long long)(cutime > 0 ? cutime : 0) + (unsigned long long)(cstime > 0 ? cstime : 0);
    return 0;
}

/* Reads VmHWM and VmRSS from /proc/PID/status (0 when the process is gone, or for a kernel thread). */
static void read_mem_kb(pid_t pid, uint64_t *hwm_kb, uint64_t *rss_kb)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    *hwm_kb = *rss_kb = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    int found = 0;
    while (found != 2 && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            *hwm_kb = strtoull(line + 6, NULL, 10);
            ++found;
        } else if (strncmp(line, "VmRSS:", 6) == 0) {
            *rss_kb = strtoull(line + 6, NULL, 10);
            ++found;
        }
    }
    fclose(f);
}

/* Fills `all` with every process's pid and parent. Returns how many (at most `max`). */
static size_t list_processes(proc_entry_t *all, size_t max)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while (n < max && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        pid_t ppid;
        if (read_stat(pid, &ppid, NULL) == 0)
            all[n++] = (proc_entry_t){pid, ppid};
    }
    closedir(d);
    return n;
}

static int contains(const pid_t *set, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; ++i)
        if (set[i] == pid)
            return 1;
    return 0;
}

int procstat_sample(const pid_t *roots, size_t nroots, procstat_t *out)
{
    /* static: partyload has one thread, and a sample then allocates nothing */
    static proc_entry_t all[PROCSTAT_MAX];
    static pid_t tree[PROCSTAT_MAX];
    size_t nall = list_processes(all, PROCSTAT_MAX), ntree = 0;
    for (size_t i = 0; i < nroots; ++i)
        if (ntree < PROCSTAT_MAX && !contains(tree, ntree, roots[i]))
            tree[ntree++] = roots[i];
    /* descendants, breadth first: each pass adds the children of what the tree holds */
    for (size_t scan = 0; scan < ntree; ++scan)
        for (size_t i = 0; i < nall && ntree < PROCSTAT_MAX; ++i)
            if (all[i].ppid == tree[scan] && !contains(tree, ntree, all[i].pid))
                tree[ntree++] = all[i].pid;
    *out = (procstat_t){0};
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long long ticks_total = 0;
    for (size_t i = 0; i < ntree; ++i) {
        pid_t ppid;
        unsigned long long ticks;
        if (read_stat(tree[i], &ppid, &ticks) != 0)
            continue; /* exited since the listing */
        ticks_total += ticks;
        uint64_t hwm, rss;
        read_mem_kb(tree[i], &hwm, &rss);
        out->hwm_kb += hwm;
        out->rss_kb += rss;
        ++out->procs;
    }
    out->cpu_s = (double)ticks_total / (double)(hz > 0 ? hz : 100);
    return out->procs == 0 ? -ESRCH : 0;
}
