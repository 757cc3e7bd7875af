/*
 * cpus.c — how many CPUs this process may use, for "shards": "auto" (see config.h).
 *
 * A container or a systemd unit limits a process by its affinity mask (taskset, cpuset) and by a CPU quota (cgroup
 * v2's cpu.max, v1's cpu.cfs_quota_us); the machine's count would start a shard per CPU the process never gets.
 */
#include "config.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The CPU quota of the cgroup at `dir` in CPUs, rounded up; 0 when none (or unreadable). v2 first, then v1. */
static long quota_cpus(const char *v2file, const char *quota_file, const char *period_file)
{
    long long quota = -1, period = 0;
    FILE *f;
    if (v2file != NULL && (f = fopen(v2file, "r")) != NULL) {
        char q[32];
        if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max") != 0)
            sscanf(q, "%lld", &quota);
        fclose(f);
    } else if (quota_file != NULL && (f = fopen(quota_file, "r")) != NULL) {
        if (fscanf(f, "%lld", &quota) != 1)
            quota = -1;
        fclose(f);
        if ((f = fopen(period_file, "r")) != NULL) {
            if (fscanf(f, "%lld", &period) != 1)
                period = 0;
            fclose(f);
        }
    }
    if (quota <= 0 || period <= 0)
        return 0;
    return (long)((quota + period - 1) / period);
}

/* The process's own cgroup's quota: /proc/self/cgroup names it ("0::/path" for v2, "N:cpu,cpuacct:/path" for v1). */
static long cgroup_cpus(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f == NULL)
        return 0;
    char line[1024], path[1400], path2[1400];
    long best = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *ctl = strchr(line, ':'), *rel;
        if (ctl == NULL || (rel = strchr(ctl + 1, ':')) == NULL)
            continue;
        *rel++ = '\0';
        rel[strcspn(rel, "\n")] = '\0';
        ++ctl;
        long n = 0;
        if (*ctl == '\0') {
            snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", strcmp(rel, "/") == 0 ? "" : rel);
            n = quota_cpus(path, NULL, NULL);
        } else if (strcmp(ctl, "cpu") == 0 || strcmp(ctl, "cpu,cpuacct") == 0 || strcmp(ctl, "cpuacct,cpu") == 0) {
            const char *r = strcmp(rel, "/") == 0 ? "" : rel;
            snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/cpu.cfs_quota_us", ctl, r);
            snprintf(path2, sizeof(path2), "/sys/fs/cgroup/%s%s/cpu.cfs_period_us", ctl, r);
            n = quota_cpus(NULL, path, path2);
        }
        if (n > 0 && (best == 0 || n < best))
            best = n;
    }
    fclose(f);
    return best;
}

int config_cpus_available(void)
{
    long n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    long q = cgroup_cpus();
    if (q > 0 && q < n)
        n = q;
    return n < 1 ? 1 : n > CONFIG_MAX_SHARDS ? CONFIG_MAX_SHARDS : (int)n;
}
