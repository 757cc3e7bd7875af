/*
 * shard.c — where a message enters a shard: the shard process, its loop, its control socket and its link to the
 * router. Frames are decoded by link.c and dispatched to the room layer (room_int.h) here.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <h2o/socket.h>
#include <h2o/socket/evloop.h>

#include <h2o/timeout.h>

#include "ctl.h"
#include "gate.h"
#include "link.h"
#include "shard.h"

#define TICK_MS 50
#define MAX_FAILED_COMMITS 3
/* One loop pass decodes at most this many frames from the router, and stops sooner once its output (held by the gate
 * or queued on the link) passes LINK_HIGH_WATER: every pass ends with a commit and a write, so a flood of requests
 * whose answers are big (3,000 GETs of a 986 KB room took a shard to 2.84 GB in one pass, with no syscall for 5 s) is
 * answered a slice at a time, under a bounded output, and the rest waits in the socket (the router then holds back
 * too: see router/http.c). */
#define PASS_MAX_FRAMES 1024

/* A growable list of ids (connection or request numbers). */
typedef struct st_idvec_t {
    uint64_t *ids;
    size_t n, cap;
} idvec_t;

static void idvec_push(idvec_t *v, uint64_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap == 0 ? 16 : v->cap * 2;
        v->ids = xrealloc(v->ids, v->cap * sizeof(*v->ids));
    }
    v->ids[v->n++] = id;
}

static struct {
    const config_t *conf;
    int index;
    h2o_evloop_t *loop;
    h2o_socket_t *ctl;
    h2o_socket_t *sig;
    link_t *link; /* to the router; NULL while there is none */
    size_t max_frame;
    store_t *store;
    h2o_timeout_t tick;
    h2o_timeout_entry_t tick_entry;
    h2o_socket_t *alarm_timer; /* a timerfd at the earliest alarm's due time (NULL: the ticks alone look) */
    /* the output gate (gate.h) */
    gate_t *gate;
    idvec_t pass_arrivals; /* when this pass's client events arrived, for the latency histogram */
    base_hist_t latency;
    unsigned failed_commits; /* in a row */
    unsigned pass_frames;    /* frames from the router decoded in this pass */
    pid_t supervisor;
    int orphaned; /* stopping because the supervisor's end of the control socket closed */
    int stop;
    int status;
} shard;

const config_t *shard_config(void)
{
    return shard.conf;
}

uint64_t shard_pass(void)
{
    return gate_pass(shard.gate);
}

int shard_index(void)
{
    return shard.index;
}

store_t *shard_store(void)
{
    return shard.store;
}

const base_hist_t *shard_latency(void)
{
    return &shard.latency;
}

/* ---- the output gate (gate.c), over the store and the router link ---- */

static int gate_commit(void *ctx, char *err, size_t errlen)
{
    (void)ctx;
    return store_commit(shard.store, err, errlen);
}

static size_t gate_pending(void *ctx)
{
    (void)ctx;
    return store_pending(shard.store);
}

static int gate_connected(void *ctx)
{
    (void)ctx;
    return shard.link != NULL;
}

static void gate_out(void *ctx, const void *frames, size_t len)
{
    (void)ctx;
    link_emit_raw(shard.link, frames, len);
}

static void gate_committed(void *ctx)
{
    (void)ctx;
    rooms_on_committed();
}

static void gate_failed(void *ctx, const uint64_t *rids, size_t num_rids, const uint64_t *cids, size_t num_cids)
{
    (void)ctx;
    rooms_on_commit_failed(rids, num_rids, cids, num_cids);
}

static const gate_ops_t gate_ops = {gate_commit, gate_pending, gate_connected, gate_out, gate_committed, gate_failed};

void shard_event_begin(void)
{
    gate_event_begin(shard.gate);
}

void shard_event_end(void)
{
    gate_event_end(shard.gate);
}

void shard_gate_event(void)
{
    gate_hold(shard.gate);
}

int shard_emit(const proto_msg_t *msg)
{
    return gate_emit(shard.gate, msg, GATE_FRAME);
}

int shard_emit_answer(const proto_msg_t *msg)
{
    return gate_emit(shard.gate, msg, GATE_ANSWER);
}

int shard_emit_verdict(const proto_msg_t *msg)
{
    return gate_emit(shard.gate, msg, GATE_VERDICT);
}

/* End of a loop pass: commit the pass's writes (one WAL sync), then release what waited for them. */
static void commit_pass(void)
{
    char err[512];
    int r = gate_end_pass(shard.gate, err, sizeof(err));
    if (r > 0) {
        shard.failed_commits = 0;
    } else if (r < 0) {
        log_error("storage: %s; the rooms that wrote were reset and their held output dropped", err);
        if (++shard.failed_commits >= MAX_FAILED_COMMITS) {
            /* RocksDB refuses writes after some errors until reopened: restart and reopen */
            log_error("storage: %u commits failed in a row; stopping so the supervisor restarts this shard", shard.failed_commits);
            shard.stop = 1;
            shard.status = 3;
        }
    }
    if (shard.pass_arrivals.n != 0) {
        uint64_t now = base_now_mono_us();
        for (size_t i = 0; i < shard.pass_arrivals.n; ++i)
            base_hist_observe(&shard.latency, (double)(now - shard.pass_arrivals.ids[i]) / 1e6);
        shard.pass_arrivals.n = 0;
    }
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    (void)entry;
    rooms_tick();
    h2o_timeout_link(shard.loop, &shard.tick, &shard.tick_entry);
}

/* ---- the alarm timer ---- */

static void on_alarm_timer(h2o_socket_t *sock, const char *err)
{
    (void)err;
    uint64_t expirations;
    while (read(h2o_socket_get_fd(sock), &expirations, sizeof(expirations)) == (ssize_t)sizeof(expirations))
        ;
    rooms_fire_alarms();
}

/* An absolute CLOCK_REALTIME timer, since alarms are wall-clock times: it fires on time when the clock is set too. */
static void alarm_timer_open(void)
{
    int fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd == -1) {
        log_warn("timerfd_create: %s; alarms are looked for every %d ms only", strerror(errno), TICK_MS);
        return;
    }
    shard.alarm_timer = h2o_evloop_socket_create(shard.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(shard.alarm_timer, on_alarm_timer);
}

void shard_alarms_wake_at(uint64_t wall_ms)
{
    if (shard.alarm_timer == NULL)
        return;
    struct itimerspec its = {0};
    if (wall_ms == 0) {
        its.it_value.tv_nsec = 1; /* long past: at once (all zeros would disarm it) */
    } else if (wall_ms != UINT64_MAX) {
        its.it_value.tv_sec = (time_t)(wall_ms / 1000);
        its.it_value.tv_nsec = (long)(wall_ms % 1000) * 1000000;
    }
    if (timerfd_settime(h2o_socket_get_fd(shard.alarm_timer), TFD_TIMER_ABSTIME, &its, NULL) != 0)
        log_warn("timerfd_settime: %s; alarms are looked for every %d ms only", strerror(errno), TICK_MS);
}

/* ---- the router link ---- */

static void on_link_hello(link_t *link, const proto_msg_t *hello)
{
    (void)link;
    log_info("router (pid %u) connected", hello->pid);
}

/* After each frame: the rest of what was read waits for the next pass once this one has done its share. */
static void pass_bound(link_t *link)
{
    if (++shard.pass_frames >= PASS_MAX_FRAMES || link_backlog(link) + gate_held_bytes(shard.gate) > LINK_HIGH_WATER)
        link_read_stop(link);
}

/* Called by the loop once a pass has committed and flushed, before it waits again. Starts the next pass's budget and,
 * when the link was stopped (pass_bound) and its output is back under LINK_LOW_WATER, decodes the frames that wait
 * (as the first events of the next pass) and reads the router again. Returns 1 when the loop must not sleep (frames
 * were decoded here, or more wait), 0 when it may: a link still stopped over its output cap waits for the socket to
 * take it, and that writable event ends the loop's wait. */
static int pass_next(void)
{
    shard.pass_frames = 0;
    if (shard.link == NULL || !link_read_is_stopped(shard.link) || link_congested(shard.link))
        return 0;
    if (link_read_resume(shard.link) != 0)
        return 0; /* the link failed: on_link_closed ran */
    return 1;
}

static void on_link_frame(link_t *link, const proto_msg_t *msg)
{
    (void)link;
    if (msg->type == PROTO_OPEN || msg->type == PROTO_MESSAGE || msg->type == PROTO_REQUEST)
        idvec_push(&shard.pass_arrivals, base_now_mono_us());
    shard_event_begin();
    switch (msg->type) {
    case PROTO_OPEN:
        rooms_on_open(msg);
        break;
    case PROTO_MESSAGE:
        rooms_on_message(msg);
        break;
    case PROTO_CLOSE:
        rooms_on_close(msg);
        break;
    case PROTO_REQUEST:
        rooms_on_request(msg);
        break;
    case PROTO_FETCH_REPLY:
        rooms_on_fetch_reply(msg);
        break;
    case PROTO_ADMIN:
        shard_admin(msg);
        break;
    case PROTO_SLOT:
        shard_slot(msg);
        break;
    default:
        log_warn("ignoring a %s frame from the router", proto_type_name(msg->type));
        break;
    }
    shard_event_end();
    pass_bound(link);
}

static void router_gone(void)
{
    /* moves in flight were the old router's: the slots serve here again until a new one moves them */
    rooms_slots_unfreeze_all();
    /* what was held for the router cannot reach it; the writes still commit */
    gate_drop_held(shard.gate);
}

static void on_link_closed(link_t *link, const char *why)
{
    (void)link;
    log_info("router link closed (%s); closing its connections", why);
    shard.link = NULL;
    router_gone();
    rooms_on_router_lost();
}

static const link_callbacks_t link_callbacks = {on_link_hello, on_link_frame, on_link_closed, NULL};

static void replace_link(int fd)
{
    if (shard.link != NULL) {
        link_close(shard.link);
        shard.link = NULL;
        router_gone();
        rooms_on_router_lost();
    }
    shard.link = link_open(shard.loop, fd, shard.max_frame, PROTO_ROLE_SHARD, shard.index, &link_callbacks, NULL);
}

/* ---- control socket and signals ---- */

static void on_ctl(h2o_socket_t *sock, const char *err)
{
    (void)err;
    for (;;) {
        ctl_msg_t m;
        int fd;
        int r = ctl_recv(h2o_socket_get_fd(sock), &m, &fd);
        if (r == -EAGAIN)
            return;
        if (r <= 0) {
            if (!shard.stop)
                log_info("supervisor went away; shutting down");
            shard.orphaned = 1;
            shard.stop = 1;
            h2o_socket_read_stop(sock);
            return;
        }
        switch (m.type) {
        case CTL_LINK:
            if (fd == -1) {
                log_error("control: CTL_LINK without a socket");
                break;
            }
            replace_link(fd);
            fd = -1;
            break;
        case CTL_DRAIN:
            rooms_node_stopping();
            shard.stop = 1;
            break;
        default:
            log_warn("control: ignoring record type %u", m.type);
            break;
        }
        if (fd != -1)
            close(fd);
    }
}

static void on_signal(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct signalfd_siginfo si;
    while (read(h2o_socket_get_fd(sock), &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM) {
            log_info("SIGTERM: shutting down");
            rooms_node_stopping();
            shard.stop = 1;
        }
    }
}

/* A dying supervisor closes its files before the kernel hands its children to a new parent, and the shard can be
 * woken by the first and be gone before the second. The router tells "the node is going away" (1001 to clients)
 * from "a shard crashed" (1011) by its own parent having changed when our link closes, so the link stays open until
 * we see that change too: the kernel reparents all the supervisor's children at once. Bounded, since a control
 * socket can also close while the supervisor lives on. */
static void await_reparenting(void)
{
    for (int i = 0; i < 1000 && getppid() == shard.supervisor; ++i)
        usleep(1000);
}

int shard_main(const config_t *conf, int index, int ctl_fd)
{
    log_set_role("shard", index);
    prctl(PR_SET_NAME, "partyd-shard", 0, 0, 0);
    memset(&shard, 0, sizeof(shard));
    shard.conf = conf;
    shard.index = index;
    shard.max_frame = config_frame_cap(conf);
    shard.supervisor = getppid();
    int sfd = ctl_child_signals();
    if (sfd == -1)
        return 1;

    char path[BASE_PATH_MAX], err[600];
    snprintf(path, sizeof(path), "%s/shard-%d", conf->data_dir, index);
    if (store_open(path, strcmp(conf->durability, "sync") == 0, &shard.store, err, sizeof(err)) != 0) {
        log_error("cannot open the shard's storage: %s", err);
        close(sfd);
        return 1;
    }

    shard.gate = gate_new(&gate_ops, NULL, shard.max_frame);
    shard.loop = h2o_evloop_create();
    h2o_timeout_init(shard.loop, &shard.tick, TICK_MS);
    shard.tick_entry.cb = on_tick;
    h2o_timeout_link(shard.loop, &shard.tick, &shard.tick_entry);
    shard.ctl = h2o_evloop_socket_create(shard.loop, ctl_fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(shard.ctl, on_ctl);
    shard.sig = h2o_evloop_socket_create(shard.loop, sfd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(shard.sig, on_signal);
    alarm_timer_open();
    rooms_init(conf, shard.store);
    log_info("started (storage %s, durability %s)", path, conf->durability);

    int busy = 0;
    while (!shard.stop) {
        h2o_evloop_run(shard.loop, busy ? 0 : INT32_MAX);
        /* end of the pass: one commit for every write, then everything the rooms produced goes out in one write */
        commit_pass();
        if (shard.link != NULL)
            link_flush(shard.link);
        busy = pass_next();
    }

    shard_event_begin();
    rooms_dispose();
    commit_pass();
    if (shard.orphaned)
        await_reparenting();
    if (shard.link != NULL) {
        link_flush(shard.link);
        link_close(shard.link);
    }
    h2o_timeout_unlink(&shard.tick_entry);
    h2o_timeout_dispose(shard.loop, &shard.tick);
    store_close(shard.store);
    gate_free(shard.gate);
    free(shard.pass_arrivals.ids);
    h2o_socket_close(shard.ctl);
    h2o_socket_close(shard.sig);
    if (shard.alarm_timer != NULL)
        h2o_socket_close(shard.alarm_timer);
    h2o_evloop_run(shard.loop, 0); /* lets h2o free the closed sockets */
    h2o_evloop_destroy(shard.loop);
    log_info("stopped");
    return shard.status;
}
