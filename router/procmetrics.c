/*
 * procmetrics.c — the standard process_* metrics for every partyd process, read from /proc by the router when
 * /metrics is scraped: the supervisor (router.supervisor), the router itself and each shard (its pid from the
 * supervisor's UP record). Each sample carries `process` ("supervisor", "router", "shard") and, for a shard, `shard`.
 *
 * Runs on the router's loop; a process that is gone between the pid and the read (a shard restarting) is skipped, not
 * an error: the scrape shows what is there.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router.h"

typedef struct st_proc_sample_t {
    double cpu_seconds, rss_bytes, vm_bytes, start_seconds, open_fds, max_fds;
} proc_sample_t;

/* Seconds since the epoch at which the machine booted (`btime` in /proc/stat); 0 when unknown. */
static double boot_time(void)
{
    static double btime;
    if (btime != 0)
        return btime;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "btime ", 6) == 0) {
            btime = strtod(line + 6, NULL);
            break;
        }
    }
    fclose(f);
    return btime;
}

static int read_proc(int pid, proc_sample_t *s)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name is in parentheses and may hold spaces: the fields after it start past the last ')' */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -EINVAL;
    /* from field 3 (state): utime is field 14, stime 15, starttime 22, vsize 23, rss 24 */
    unsigned long long v[24] = {0};
    int field = 3;
    char *save = NULL;
    for (char *tok = strtok_r(p + 2, " ", &save); tok != NULL && field <= 24; tok = strtok_r(NULL, " ", &save), ++field)
        v[field - 1] = strtoull(tok, NULL, 10);
    if (field <= 24)
        return -EINVAL;
    double tick = (double)sysconf(_SC_CLK_TCK);
    s->cpu_seconds = (double)(v[13] + v[14]) / tick;
    s->start_seconds = boot_time() + (double)v[21] / tick;
    s->vm_bytes = (double)v[22];
    s->rss_bytes = (double)v[23] * (double)sysconf(_SC_PAGESIZE);

    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -errno;
    s->open_fds = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        s->open_fds += e->d_name[0] != '.';
    closedir(d);

    s->max_fds = 0;
    snprintf(path, sizeof(path), "/proc/%d/limits", pid);
    if ((f = fopen(path, "r")) != NULL) {
        char line[256];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "Max open files", 14) == 0) {
                s->max_fds = strtod(line + 14, NULL);
                break;
            }
        }
        fclose(f);
    }
    return 0;
}

static void append(base_buf_t *b, const char *text)
{
    base_buf_append(b, text, strlen(text));
}

void procmetrics_write(base_buf_t *b)
{
    struct {
        int pid;
        char labels[48];
        proc_sample_t s;
    } procs[2 + CONFIG_MAX_SHARDS];
    size_t num = 0;
    procs[num].pid = (int)router.supervisor;
    snprintf(procs[num++].labels, sizeof(procs[0].labels), "process=\"supervisor\"");
    procs[num].pid = (int)getpid();
    snprintf(procs[num++].labels, sizeof(procs[0].labels), "process=\"router\"");
    for (int k = 0; k < router.num_shards; ++k) {
        const router_shard_t *sh = &router.shards[router.ids[k]];
        if (sh->state != SHARD_UP || sh->pid <= 0)
            continue;
        procs[num].pid = sh->pid;
        snprintf(procs[num++].labels, sizeof(procs[0].labels), "process=\"shard\",shard=\"%d\"", router.ids[k]);
    }
    size_t ok = 0;
    for (size_t i = 0; i < num; ++i)
        if (procs[i].pid > 0 && read_proc(procs[i].pid, &procs[i].s) == 0)
            procs[ok++] = procs[i];

    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } fams[] = {
        {"process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.",
         offsetof(proc_sample_t, cpu_seconds)},
        {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", offsetof(proc_sample_t, rss_bytes)},
        {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", offsetof(proc_sample_t, vm_bytes)},
        {"process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.",
         offsetof(proc_sample_t, start_seconds)},
        {"process_open_fds", "gauge", "Open file descriptors.", offsetof(proc_sample_t, open_fds)},
        {"process_max_fds", "gauge", "The process's limit on open file descriptors.", offsetof(proc_sample_t, max_fds)},
    };
    char line[256];
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); ++f) {
        snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name, fams[f].type);
        append(b, line);
        for (size_t i = 0; i < ok; ++i) {
            double v;
            memcpy(&v, (const char *)&procs[i].s + fams[f].offset, sizeof(v));
            snprintf(line, sizeof(line), "%s{%s} %.17g\n", fams[f].name, procs[i].labels, v);
            append(b, line);
        }
    }
}
