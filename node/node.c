/*
 * node.c — the supervisor (see node.h).
 *
 * The supervisor does no network I/O of its own: it owns the listening sockets (so a restarted router listens on the
 * same port at once), the data directory's lock, and one control socket per child. Its loop is poll() over a
 * signalfd, with restarts scheduled by deadline.
 */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "base.h"
#include "beat.h"
#include "ctl.h"
#include "router_main.h"
#include "shard.h"

#define RESTART_BASE_MS 50
#define RESTART_MAX_MS 5000
#define STABLE_MS 10000 /* a child that ran this long restarts without backoff next time */
#define WATCH_MS 100    /* how often the heartbeat pages are looked at */

typedef struct st_child_t {
    const char *role; /* "router" or "shard" */
    int index;        /* shard id; -1 for the router */
    int active;       /* a shard of the node (node.json lists it) */
    int retiring;     /* stopping for good: not restarted, its data deleted when it has exited */
    pid_t pid;        /* 0 when not running */
    int ctl;          /* the supervisor's end of the control socket; -1 when not running */
    uint64_t started_at;
    uint64_t restart_at; /* when to start it again; 0 when nothing is scheduled */
    unsigned streak;     /* quick deaths in a row */
    uint32_t restarts;
    int stalled;          /* a shard: reported stalled to the router (CTL_SHARD_STALLED) */
    int killed_for_stall; /* a shard: SIGKILLed since its loop stopped turning */
} child_t;

static struct {
    config_t *conf;
    const partydefs_t *defs;
    int listen_fd, admin_fd, lock_fd, sig_fd;
    child_t router;
    child_t shards[CONFIG_MAX_SHARDS]; /* by shard id */
    int next_shard_id;                 /* ids are never reused: a shard's data directory is named after it */
    int draining;
    int ready_told; /* READY=1 was sent to the service manager (notify.c) */
    uint64_t started_ms; /* wall clock */
    beat_t *beats;       /* the shards' heartbeat pages, by shard id (shared memory, inherited by every child) */
    uint64_t watched_at; /* when the pages were last looked at */
} node;

/* ---- set-up ---- */

static int mkdir_p(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof(buf))
        return -ENAMETOOLONG;
    strcpy(buf, path);
    for (char *p = buf + 1; *p != '\0'; ++p) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0750) == -1 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0750) == -1 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Creates the data directory and takes its lock: two nodes must never share one. */
static int lock_data_dir(void)
{
    int r = mkdir_p(node.conf->data_dir);
    if (r != 0) {
        log_error("cannot create the data directory %s: %s", node.conf->data_dir, strerror(-r));
        return -1;
    }
    char path[BASE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/LOCK", node.conf->data_dir);
    node.lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (node.lock_fd == -1) {
        log_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(node.lock_fd, LOCK_EX | LOCK_NB) == -1) {
        char other[32] = "";
        ssize_t n = pread(node.lock_fd, other, sizeof(other) - 1, 0);
        other[n > 0 ? n : 0] = '\0';
        other[strcspn(other, "\n")] = '\0';
        log_error("the data directory %s is in use by another partyd (pid %s)", node.conf->data_dir,
                  other[0] != '\0' ? other : "unknown");
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(node.lock_fd, 0) == -1 || pwrite(node.lock_fd, pid, (size_t)n, 0) != n)
        log_warn("cannot record the pid in %s: %s", path, strerror(errno));
    return 0;
}

/* The data directory records which shards hold its data (node.json, written here, atomically): their ids, and the next
 * id to give. Which shard owns which slot is the router's record (slots, see router/migrate.c); with no such record
 * it is the rendezvous table over these ids. Format 1 (a shard count) reads as ids 0..N-1. */
#define DATA_FORMAT 2

static int write_node_json(void)
{
    json_t *ids = json_array();
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].active)
            json_array_append_new(ids, json_integer(i));
    json_t *root = json_pack("{s:i, s:o, s:i}", "format", DATA_FORMAT, "shards", ids, "next_id", node.next_shard_id);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    int r = base_write_file_atomic(node.conf->data_dir, "node.json", text, strlen(text));
    free(text);
    if (r != 0) {
        log_error("cannot write %s/node.json: %s", node.conf->data_dir, strerror(-r));
        return r; /* -errno: the router tells the operator why (CTL_SPAWN_FAILED) */
    }
    return 0;
}

static int load_data_format(void)
{
    char path[BASE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/node.json", node.conf->data_dir);
    if (access(path, F_OK) != 0) {
        for (int i = 0; i < node.conf->shards; ++i)
            node.shards[i].active = 1;
        node.next_shard_id = node.conf->shards;
        return write_node_json();
    }
    json_error_t jerr;
    json_t *meta = json_load_file(path, 0, &jerr);
    if (meta == NULL) {
        log_error("%s: %s", path, jerr.text);
        return -1;
    }
    int format = (int)json_integer_value(json_object_get(meta, "format"));
    json_t *shards = json_object_get(meta, "shards");
    int ok = 1;
    if (format == 1 && json_is_integer(shards) && json_integer_value(shards) >= 1 &&
        json_integer_value(shards) <= CONFIG_MAX_SHARDS) {
        for (int i = 0; i < json_integer_value(shards); ++i)
            node.shards[i].active = 1;
        node.next_shard_id = (int)json_integer_value(shards);
    } else if (format == DATA_FORMAT && json_is_array(shards) && json_array_size(shards) >= 1) {
        size_t k;
        json_t *id;
        json_array_foreach(shards, k, id)
        {
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= CONFIG_MAX_SHARDS)
                ok = 0;
            else
                node.shards[json_integer_value(id)].active = 1;
        }
        node.next_shard_id = (int)json_integer_value(json_object_get(meta, "next_id"));
    } else {
        ok = 0;
    }
    json_decref(meta);
    if (!ok) {
        log_error("%s: not a data directory record this partyd reads (format %d)", path, format);
        return -1;
    }
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].active && i >= node.next_shard_id)
            node.next_shard_id = i + 1;
    return format == DATA_FORMAT ? 0 : write_node_json();
}

static int num_active_shards(void)
{
    int n = 0;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        n += node.shards[i].active;
    return n;
}

/* Deletes a retired shard's data directory. */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_shard_data(int id)
{
    char path[BASE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/shard-%d", node.conf->data_dir, id);
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        log_warn("cannot delete %s: %s", path, strerror(errno));
    else
        log_info("shard %d retired; its data directory is deleted", id);
}

/* Binds host:port; returns the fd and stores the bound port (port 0 picks one). */
static int bind_listener(const char *what, const char *host, int port, int *bound)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int r = getaddrinfo(host, portstr, &hints, &res);
    if (r != 0) {
        log_error("%s: cannot resolve %s: %s", what, host, gai_strerror(r));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd == -1; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd == -1) {
            err = errno;
            continue;
        }
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, SOMAXCONN) == -1) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd == -1) {
        log_error("%s: cannot listen on %s:%d: %s", what, host, port, strerror(err));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* ---- children ---- */

static void close_inherited(const child_t *self)
{
    /* a child keeps only what its role needs */
    close(node.sig_fd);
    close(node.lock_fd);
    if (node.router.ctl != -1 && &node.router != self)
        close(node.router.ctl);
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].ctl != -1 && &node.shards[i] != self)
            close(node.shards[i].ctl);
    if (self != &node.router) {
        close(node.listen_fd);
        if (node.admin_fd != -1)
            close(node.admin_fd);
    }
}

/* "router" or "shard 3", for log lines */
static const char *child_name(const child_t *c)
{
    static char buf[32];
    if (c->index < 0)
        return c->role;
    snprintf(buf, sizeof(buf), "%s %d", c->role, c->index);
    return buf;
}

static void send_ctl(child_t *c, uint32_t type, int shard, int pid, uint32_t restarts, int fd)
{
    if (c->ctl == -1)
        return;
    ctl_msg_t m = {.type = type, .shard = shard, .pid = pid, .restarts = restarts};
    int r = ctl_send(c->ctl, &m, fd);
    if (r != 0)
        log_warn("control message to %s: %s", child_name(c), strerror(-r));
}

/* Gives `shard` a fresh link to the router: one end to each. */
static void connect_shard(child_t *shard)
{
    if (node.router.pid == 0 || shard->pid == 0)
        return;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
        log_error("socketpair: %s", strerror(errno));
        return;
    }
    send_ctl(shard, CTL_LINK, shard->index, 0, 0, sv[0]);
    send_ctl(&node.router, CTL_SHARD_UP, shard->index, shard->pid, shard->restarts, sv[1]);
    close(sv[0]);
    close(sv[1]);
}

/* ---- stalls and quarantines ---- */

static void send_room_ctl(uint32_t type, const char *room, uint64_t ms)
{
    if (node.router.ctl == -1)
        return;
    ctl_msg_t m = {.type = type, .shard = -1, .ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms};
    snprintf(m.room, sizeof(m.room), "%s", room);
    int r = ctl_send(node.router.ctl, &m, -1);
    if (r != 0)
        log_warn("control message to the router: %s", strerror(-r));
}

static void tell_quarantine(const char *room, uint64_t left_ms, void *data)
{
    (void)data;
    send_room_ctl(CTL_QUARANTINE, room, left_ms);
}

/* A restarted router knows nothing: the stalls and quarantines in force are told again. */
static void tell_new_router(void)
{
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].pid != 0 && node.shards[i].stalled)
            send_ctl(&node.router, CTL_SHARD_STALLED, i, 0, 0, -1);
    strikes_each_quarantined(base_now_mono_ms(), tell_quarantine, NULL);
}

/* Shard `c` died while room `room`'s event `callback` ran: one more crash against the room (strikes.c), which may
 * quarantine it. */
static void strike(const child_t *c, const char *room, const char *callback, const char *how)
{
    unsigned level = 0;
    uint64_t ms = strikes_crash(room, base_now_mono_ms(), node.conf->timers.quarantine_ms, &level);
    if (ms == 0) {
        log_warn("room %s: %s %s in %s (crash 1; a second within %d s quarantines the room)", room, child_name(c), how, callback,
                 STRIKES_WINDOW_MS / 1000);
        return;
    }
    log_error("room %s quarantined for %llu ms (quarantine %u): %s %s in %s, a second crash within %d s; its requests and "
              "connections get 503 meanwhile",
              room, (unsigned long long)ms, level, child_name(c), how, callback, STRIKES_WINDOW_MS / 1000);
    send_room_ctl(CTL_QUARANTINE, room, ms);
}

/* Looks at every running shard's heartbeat page: a loop that has not turned for timers.stall_ms is reported (once),
 * one that has not for timers.stall_kill_ms is killed; its exit is reaped and restarted as a crash. */
static void watch_beats(void)
{
    uint64_t now = base_now_mono_ms();
    if (now - node.watched_at < WATCH_MS)
        return;
    node.watched_at = now;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i) {
        child_t *c = &node.shards[i];
        if (c->pid == 0 || c->retiring)
            continue;
        beat_snapshot_t b;
        beat_read(&node.beats[i], &b);
        if (b.pass == 0 || b.stopping)
            continue; /* opening its storage, or shutting down */
        uint64_t age = now > b.turned_ms ? now - b.turned_ms : 0;
        if (age >= node.conf->timers.stall_ms && !c->stalled) {
            c->stalled = 1;
            if (b.callback[0] != '\0')
                log_error("%s (pid %d) stalled: its loop has not turned for %llu ms; it is running %s of room %s for %llu ms",
                          child_name(c), (int)c->pid, (unsigned long long)age, b.callback, b.room[0] != '\0' ? b.room : "(none)",
                          (unsigned long long)(now > b.since_ms ? now - b.since_ms : 0));
            else
                log_error("%s (pid %d) stalled: its loop has not turned for %llu ms, outside any room's event (storage?)",
                          child_name(c), (int)c->pid, (unsigned long long)age);
            ctl_msg_t m = {.type = CTL_SHARD_STALLED, .shard = i, .ms = (uint32_t)age};
            if (node.router.ctl != -1)
                ctl_send(node.router.ctl, &m, -1);
        } else if (age < node.conf->timers.stall_ms && c->stalled && !c->killed_for_stall) {
            c->stalled = 0;
            log_warn("%s (pid %d) turns again", child_name(c), (int)c->pid);
            send_ctl(&node.router, CTL_SHARD_RESUMED, i, 0, 0, -1);
        }
        if (node.conf->timers.stall_kill_ms != 0 && age >= node.conf->timers.stall_kill_ms && !c->killed_for_stall) {
            c->killed_for_stall = 1;
            log_error("%s (pid %d): its loop has not turned for %llu ms (timers.stall_kill_ms); killing it", child_name(c),
                      (int)c->pid, (unsigned long long)age);
            kill(c->pid, SIGKILL);
        }
    }
}

static int spawn(child_t *c)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
        log_error("socketpair: %s", strerror(errno));
        return -1;
    }
    if (c->index >= 0) {
        beat_reset(&node.beats[c->index]);
        c->stalled = c->killed_for_stall = 0;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == -1) {
        log_error("fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        close_inherited(c);
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        int ids[CONFIG_MAX_SHARDS], n = 0;
        for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
            if (node.shards[i].active)
                ids[n++] = i;
        int status = c->index < 0 ? router_main(node.conf, node.defs, sv[1], node.listen_fd, node.admin_fd, node.started_ms, ids, n,
                                                c->restarts == 0 ? node.conf->shards : 0)
                                  : shard_main(node.conf, node.defs, c->index, sv[1], &node.beats[c->index]);
        close(sv[1]);
        config_dispose(node.conf);
        exit(status);
    }
    close(sv[1]);
    c->ctl = sv[0];
    c->pid = pid;
    c->started_at = base_now_mono_ms();
    c->restart_at = 0;
    if (c->index < 0) {
        for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
            if (node.shards[i].active)
                connect_shard(&node.shards[i]);
        tell_new_router();
    } else {
        connect_shard(c);
    }
    return 0;
}

static child_t *child_by_pid(pid_t pid)
{
    if (node.router.pid == pid)
        return &node.router;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].pid == pid)
            return &node.shards[i];
    return NULL;
}

static void describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "stopped (status %d)", status);
}

static void reap_children(void)
{
    int status, r;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        child_t *c = child_by_pid(pid);
        if (c == NULL)
            continue;
        char how[128];
        describe_status(status, how, sizeof(how));
        close(c->ctl);
        c->ctl = -1;
        c->pid = 0;
        if (c->retiring) {
            log_info("%s (pid %d) %s", child_name(c), (int)pid, how);
            c->retiring = 0;
            remove_shard_data(c->index);
            continue;
        }
        if (node.draining) {
            log_info("%s (pid %d) %s", child_name(c), (int)pid, how);
            continue;
        }
        /* why it is restarted, for the router's /admin/shards: how it went, and in which room's callback */
        ctl_msg_t down = {.type = CTL_SHARD_DOWN, .shard = c->index};
        snprintf(down.room, sizeof(down.room), "%s", c->killed_for_stall ? "was killed for a stall" : how);
        if (c->index >= 0) {
            /* what ran when it died: a crash (a signal, a stall kill, or a sanitizer's exit mid-event) is the room's */
            beat_snapshot_t b;
            beat_read(&node.beats[c->index], &b);
            int crashed = WIFSIGNALED(status) || c->killed_for_stall || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
            if (crashed && b.room[0] != '\0' && b.callback[0] != '\0' && !b.stopping) {
                strike(c, b.room, b.callback, c->killed_for_stall ? "was killed for a stall" : how);
                size_t l = strlen(down.room);
                snprintf(down.room + l, sizeof(down.room) - l, " in %s of room %s", b.callback, b.room);
            }
            c->stalled = c->killed_for_stall = 0;
        }
        uint64_t now = base_now_mono_ms(), ran = now - c->started_at;
        c->streak = ran >= STABLE_MS ? 0 : c->streak + 1;
        uint64_t delay = c->streak == 0 ? 0 : (uint64_t)RESTART_BASE_MS << (c->streak > 7 ? 7 : c->streak - 1);
        if (delay > RESTART_MAX_MS)
            delay = RESTART_MAX_MS;
        c->restart_at = now + delay + 1;
        log_warn("%s (pid %d) %s after %llu ms; restarting in %llu ms", child_name(c), (int)pid, how, (unsigned long long)ran,
                 (unsigned long long)delay);
        if (c->index >= 0 && node.router.ctl != -1 && (r = ctl_send(node.router.ctl, &down, -1)) != 0)
            log_warn("control message to %s: %s", child_name(&node.router), strerror(-r));
    }
}

/* The router asks: a new shard (add-shard), or a shard to retire (it owns no slot any more). */
static void on_router_ctl(void)
{
    for (;;) {
        ctl_msg_t m;
        int fd;
        int r = ctl_recv(node.router.ctl, &m, &fd);
        if (fd != -1)
            close(fd);
        if (r != 1)
            return; /* nothing more, or the router is gone (its exit is reaped) */
        if (m.type == CTL_SPAWN_SHARD) {
            /* every refusal is answered (CTL_SPAWN_FAILED): the router waits for this shard and refuses other shard
             * changes meanwhile */
            int id = node.next_shard_id;
            if (id >= CONFIG_MAX_SHARDS || num_active_shards() >= CONFIG_MAX_SHARDS) {
                log_error("add-shard: no shard id left (the limit is %d)", CONFIG_MAX_SHARDS);
                send_ctl(&node.router, CTL_SPAWN_FAILED, -1, ERANGE, 0, -1);
                continue;
            }
            node.shards[id] = (child_t){.role = "shard", .index = id, .ctl = -1, .active = 1};
            ++node.next_shard_id;
            int err = write_node_json();
            if (err != 0) {
                /* not recorded, so not taken: the id is given again once node.json can be written */
                node.shards[id].active = 0;
                --node.next_shard_id;
                send_ctl(&node.router, CTL_SPAWN_FAILED, id, -err, 0, -1);
                continue;
            }
            log_info("adding shard %d", id);
            spawn(&node.shards[id]);
        } else if (m.type == CTL_SERVING && !node.ready_told) {
            node.ready_told = 1; /* later ones (after a router or shard restart) change nothing for systemd */
            notify_send("READY=1\nSTATUS=serving");
        } else if (m.type == CTL_UNQUARANTINE) {
            m.room[sizeof(m.room) - 1] = '\0';
            if (strikes_forget(m.room) == 0)
                log_info("room %s: quarantine lifted by an operator", m.room);
        } else if (m.type == CTL_RETIRE_SHARD && m.shard >= 0 && m.shard < CONFIG_MAX_SHARDS && node.shards[m.shard].active &&
                   num_active_shards() > 1) {
            child_t *s = &node.shards[m.shard];
            s->active = 0;
            s->restart_at = 0;
            if (write_node_json() != 0) {
                s->active = 1;
                continue;
            }
            log_info("retiring shard %d", m.shard);
            if (s->pid != 0) {
                s->retiring = 1;
                send_ctl(s, CTL_DRAIN, m.shard, 0, 0, -1);
            } else {
                remove_shard_data(m.shard);
            }
        }
    }
}

static void restart_due(void)
{
    uint64_t now = base_now_mono_ms();
    child_t *all[CONFIG_MAX_SHARDS + 1];
    size_t n = 0;
    all[n++] = &node.router;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].active)
            all[n++] = &node.shards[i];
    for (size_t i = 0; i < n; ++i) {
        child_t *c = all[i];
        if (c->pid == 0 && c->restart_at != 0 && now >= c->restart_at) {
            ++c->restarts;
            if (spawn(c) != 0)
                c->restart_at = now + RESTART_MAX_MS;
        }
    }
}

static int next_timeout(void)
{
    uint64_t now = base_now_mono_ms(), next = UINT64_MAX;
    if (node.router.pid == 0 && node.router.restart_at != 0)
        next = node.router.restart_at;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].active && node.shards[i].pid == 0 && node.shards[i].restart_at != 0 && node.shards[i].restart_at < next)
            next = node.shards[i].restart_at;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].pid != 0 && now + WATCH_MS < next)
            next = now + WATCH_MS; /* the heartbeat pages are looked at that often */
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)(next - now);
}

/* ---- drain ---- */

/* Waits until none of `children` runs, or the deadline; then kills what is left. */
static void wait_for(child_t **children, size_t n, uint64_t deadline)
{
    for (;;) {
        reap_children();
        size_t alive = 0;
        for (size_t i = 0; i < n; ++i)
            alive += children[i]->pid != 0;
        if (alive == 0)
            return;
        uint64_t now = base_now_mono_ms();
        if (now >= deadline) {
            for (size_t i = 0; i < n; ++i)
                if (children[i]->pid != 0) {
                    log_warn("%s (pid %d) did not stop in time; killing it", child_name(children[i]), (int)children[i]->pid);
                    kill(children[i]->pid, SIGKILL);
                }
            deadline = UINT64_MAX; /* SIGKILL cannot be ignored: wait for it */
        }
        struct pollfd p = {node.sig_fd, POLLIN, 0};
        int t = deadline == UINT64_MAX ? 100 : (int)(deadline - now < 100 ? deadline - now : 100);
        if (poll(&p, 1, t) > 0) {
            struct signalfd_siginfo si;
            while (read(node.sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
                    log_warn("second signal: stopping at once");
                    deadline = 0;
                }
        }
    }
}

static void drain(void)
{
    node.draining = 1;
    notify_send("STOPPING=1\nSTATUS=draining");
    log_info("draining: the router closes its connections, then the shards stop");
    uint64_t start = base_now_mono_ms();
    child_t *router = &node.router;
    send_ctl(router, CTL_DRAIN, -1, 0, 0, -1);
    wait_for(&router, 1, start + node.conf->timers.drain_ms / 2 + 1000);
    child_t *shards[CONFIG_MAX_SHARDS];
    size_t n = 0;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].pid != 0) {
            shards[n] = &node.shards[i];
            send_ctl(shards[n++], CTL_DRAIN, i, 0, 0, -1);
        }
    wait_for(shards, n, base_now_mono_ms() + node.conf->timers.drain_ms);
}

/* SIGHUP: checked here once (reload.c), then the same text to every running child; a child started later forks from
 * node.conf, which has the new values too. */
static void reload(void)
{
    config_t fresh;
    int fd = node_reload_prepare(node.conf, &fresh);
    if (fd == -1)
        return;
    config_apply_live(node.conf, &fresh);
    config_dispose(&fresh);
    ctl_msg_t m = {.type = CTL_RELOAD, .shard = -1};
    if (node.router.ctl != -1)
        ctl_send(node.router.ctl, &m, fd);
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].ctl != -1 && node.shards[i].pid != 0)
            ctl_send(node.shards[i].ctl, &m, fd);
    close(fd);
}

int node_run(config_t *conf, const partydefs_t *defs)
{
    log_set_role("node", -1);
    memset(&node, 0, sizeof(node));
    node.conf = conf;
    node.defs = defs;
    node.started_ms = base_now_wall_ms();
    node.admin_fd = node.lock_fd = node.sig_fd = -1;
    signal(SIGPIPE, SIG_IGN);

    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        node.shards[i] = (child_t){.role = "shard", .index = i, .ctl = -1};
    if ((node.beats = beat_map(CONFIG_MAX_SHARDS)) == NULL) {
        log_error("cannot map the shards' heartbeat pages: %s", strerror(errno));
        return 1;
    }
    if (lock_data_dir() != 0 || load_data_format() != 0)
        return 1;
    if (conf->tls_cert != NULL) {
        /* a bad certificate stops the node now, not the router later, restart after restart */
        char err[600];
        struct ssl_ctx_st *ctx = router_tls_context(conf, err, sizeof(err));
        if (ctx == NULL) {
            log_error("%s", err);
            return 1;
        }
        SSL_CTX_free(ctx);
    }
    int port, admin_port = 0;
    if ((node.listen_fd = bind_listener("listen", conf->host, conf->port, &port)) == -1)
        return 1;
    if (conf->admin_enabled && (node.admin_fd = bind_listener("admin", conf->admin_host, conf->admin_port, &admin_port)) == -1)
        return 1;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    node.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

    const char *fmt6 = "[%s]:%d", *fmt4 = "%s:%d";
    char addr[300], admin_addr[300] = "off";
    snprintf(addr, sizeof(addr), strchr(conf->host, ':') != NULL ? fmt6 : fmt4, conf->host, port);
    if (conf->admin_enabled)
        snprintf(admin_addr, sizeof(admin_addr), strchr(conf->admin_host, ':') != NULL ? fmt6 : fmt4, conf->admin_host, admin_port);
    printf("partyd %s listening on %s://%s\n", PARTYD_VERSION, conf->tls_cert != NULL ? "https" : "http", addr);
    if (conf->admin_enabled)
        printf("partyd admin on http://%s\n", admin_addr);
    fflush(stdout);
    int active = num_active_shards();
    if (active != conf->shards)
        log_info("the data directory has %d shards and the configuration asks for %d: the router moves rooms to match", active,
                 conf->shards);
    log_info("starting %d shards; config: %s; data dir: %s", active, conf->source, conf->data_dir);
    for (size_t i = 0; i < conf->num_parties; ++i) {
        const config_party_t *p = &conf->parties[i];
        if (p->module != NULL)
            log_info("party %s: module %s (kind %s)", p->name, p->module, defs->defs[i].kind);
        for (size_t k = 0; k < p->num_vars; ++k)
            if (p->vars[k].value == NULL)
                log_warn("party %s: var %s: the environment variable %s is not set; the party sees no such var", p->name,
                         p->vars[k].name, p->vars[k].env);
    }
    if (conf->serve != NULL)
        log_info("serving the files of %s at /", conf->serve);

    node.router = (child_t){.role = "router", .index = -1, .ctl = -1};
    int failed = 0;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (node.shards[i].active)
            failed |= spawn(&node.shards[i]);
    failed |= spawn(&node.router);

    while (!failed) {
        struct pollfd p[2] = {{node.sig_fd, POLLIN, 0}, {node.router.ctl, POLLIN, 0}};
        int r = poll(p, node.router.ctl != -1 ? 2 : 1, next_timeout());
        if (r > 0 && node.router.ctl != -1 && (p[1].revents & POLLIN))
            on_router_ctl();
        if (r == -1 && errno != EINTR) {
            log_error("poll: %s", strerror(errno));
            break;
        }
        struct signalfd_siginfo si;
        int stop = 0;
        while (read(node.sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                log_info("%s received", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                stop = 1;
            } else if (si.ssi_signo == SIGHUP) {
                /* systemd's reload protocol for Type=notify: RELOADING=1, then READY=1 once the reload is done (or
                 * refused: the node serves on with the old settings either way) */
                notify_send("RELOADING=1\nSTATUS=reloading");
                reload();
                notify_send("READY=1\nSTATUS=serving");
            }
        }
        reap_children();
        if (stop)
            break;
        watch_beats();
        restart_due();
    }

    drain();
    close(node.listen_fd);
    if (node.admin_fd != -1)
        close(node.admin_fd);
    close(node.sig_fd);
    /* the lock goes with the descriptor */
    close(node.lock_fd);
    log_info("stopped");
    return failed ? 1 : 0;
}
