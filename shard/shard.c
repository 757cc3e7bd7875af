/*
 * shard.c — where a message enters a shard: the shard process, its loop (ipc/loop.h: no h2o here), its control
 * socket and its link to the router. Frames are decoded by link.c and dispatched to the room layer (room_int.h) here.
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

#include "beat.h"
#include "child.h"
#include "gate.h"
#include "link.h"
#include "loop.h"
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
    const partydefs_t *defs;
    int index;
    loop_t *loop;
    loop_watch_t *ctl; /* NULL once the supervisor's end closed */
    loop_watch_t *sig;
    link_t *link; /* to the router; NULL while there is none */
    size_t max_frame;
    store_t *store;
    loop_timer_t tick;
    loop_watch_t *alarm_timer; /* a timerfd at the earliest alarm's due time (NULL: the ticks alone look) */
    /* the output gate (gate.h) */
    gate_t *gate;
    idvec_t pass_arrivals; /* when this pass's client events arrived, for the latency histogram */
    base_hist_t latency;
    unsigned failed_commits; /* in a row */
    unsigned pass_frames;    /* frames from the router decoded in this pass */
    pid_t supervisor;
    beat_t *beat; /* the heartbeat page the supervisor reads (ipc/beat.h); NULL without one */
    int orphaned; /* stopping because the supervisor's end of the control socket closed */
    int stop;
    int status;
} shard;

const config_t *shard_config(void)
{
    return shard.conf;
}

const partydefs_t *shard_partydefs(void)
{
    return shard.defs;
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

static void gate_failed(void *ctx, const uint64_t *rids, size_t num_rids, const uint64_t *cids, size_t num_cids,
                        const uint64_t *closed, size_t num_closed)
{
    (void)ctx;
    rooms_on_commit_failed(rids, num_rids, cids, num_cids, closed, num_closed);
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

int shard_emit_close(const proto_msg_t *msg)
{
    return gate_emit(shard.gate, msg, GATE_CLOSE);
}

/* End of a loop pass: commit the pass's writes (one WAL sync), then release what waited for them. */
static void commit_pass(void)
{
    char err[512];
    int r = gate_end_pass(shard.gate, err, sizeof(err));
    shard_slots_after_commit(r < 0);
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

void shard_beat_room(const char *key, size_t len)
{
    beat_room(shard.beat, key, len);
}

/* the event a frame starts, as the heartbeat page names it (what a stall or a crash is blamed on) */
static const char *event_name(uint8_t type)
{
    switch (type) {
    case PROTO_OPEN:
        return "on_connect";
    case PROTO_MESSAGE:
        return "on_message";
    case PROTO_CLOSE:
        return "on_close";
    case PROTO_REQUEST:
        return "on_request";
    case PROTO_FETCH_REPLY:
        return "on_fetch_reply";
    case PROTO_ADMIN:
        return "admin";
    case PROTO_SLOT:
        return "slot";
    default:
        return "frame";
    }
}

static void on_tick(loop_timer_t *timer)
{
    beat_event(shard.beat, "tick");
    rooms_tick();
    beat_idle(shard.beat);
    loop_timer_start(shard.loop, timer, TICK_MS);
}

/* ---- the alarm timer ---- */

static void on_alarm_timer(loop_watch_t *watch, int events)
{
    (void)events;
    uint64_t expirations;
    while (read(loop_watch_fd(watch), &expirations, sizeof(expirations)) == (ssize_t)sizeof(expirations))
        ;
    beat_event(shard.beat, "on_alarm");
    rooms_fire_alarms();
    beat_idle(shard.beat);
}

/* An absolute CLOCK_REALTIME timer, since alarms are wall-clock times: it fires on time when the clock is set too. */
static void alarm_timer_open(void)
{
    int fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd == -1) {
        log_warn("timerfd_create: %s; alarms are looked for every %d ms only", strerror(errno), TICK_MS);
        return;
    }
    if ((shard.alarm_timer = loop_watch(shard.loop, fd, on_alarm_timer, NULL)) == NULL) {
        log_warn("epoll: %s; alarms are looked for every %d ms only", strerror(errno), TICK_MS);
        close(fd);
    }
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
    if (timerfd_settime(loop_watch_fd(shard.alarm_timer), TFD_TIMER_ABSTIME, &its, NULL) != 0)
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
    beat_event(shard.beat, event_name(msg->type));
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
    beat_idle(shard.beat);
    pass_bound(link);
}

static void router_gone(void)
{
    /* moves in flight were the old router's; frozen slots stay so until the next router says which are ours */
    shard_slots_router_gone();
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
    shard.link = link_open(&link_io_loop, shard.loop, fd, shard.max_frame, PROTO_ROLE_SHARD, shard.index, &link_callbacks, NULL);
}

/* ---- control socket and signals ---- */

static void on_ctl_record(const ctl_msg_t *m, int *fd, void *data)
{
    (void)data;
    switch (m->type) {
    case CTL_LINK:
        if (*fd == -1) {
            log_error("control: CTL_LINK without a socket");
            break;
        }
        replace_link(*fd);
        *fd = -1;
        break;
    case CTL_RELOAD: {
        /* SIGHUP: vars, per-room caps and room timers are read at each use from this process's copy (config.h) */
        char err[1024];
        if (*fd != -1 && config_reload_fd((config_t *)shard.conf, *fd, err, sizeof(err)) != 0)
            log_error("SIGHUP: keeping the old settings: %s", err);
        break;
    }
    case CTL_DRAIN:
        rooms_node_stopping();
        shard.stop = 1;
        break;
    default:
        log_warn("control: ignoring record type %u", m->type);
        break;
    }
}

static void on_orphaned(void *data)
{
    (void)data;
    if (!shard.stop)
        log_info("supervisor went away; shutting down");
    shard.orphaned = 1;
    shard.stop = 1;
}

static void on_term(void *data)
{
    (void)data;
    log_info("SIGTERM: shutting down");
    rooms_node_stopping();
    shard.stop = 1;
}

static const child_callbacks_t child_callbacks = {on_ctl_record, on_orphaned, on_term};

static void on_ctl(loop_watch_t *watch, int events)
{
    (void)events;
    if (child_ctl_readable(loop_watch_fd(watch), &child_callbacks, NULL) != 0) {
        loop_unwatch(watch);
        shard.ctl = NULL;
    }
}

static void on_signal(loop_watch_t *watch, int events)
{
    (void)events;
    child_signals_readable(loop_watch_fd(watch), &child_callbacks, NULL);
}

/* The loop's before-sleep hook: the end of the pass. One commit for every write, then everything the rooms produced
 * goes out in one write. */
static void end_of_pass(void *data)
{
    (void)data;
    commit_pass();
    if (shard.link != NULL)
        link_flush(shard.link);
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

int shard_main(const config_t *conf, const partydefs_t *defs, int index, int ctl_fd, beat_t *beat)
{
    log_set_role("shard", index);
    prctl(PR_SET_NAME, "partyd-shard", 0, 0, 0);
    memset(&shard, 0, sizeof(shard));
    shard.conf = conf;
    shard.defs = defs;
    shard.index = index;
    shard.max_frame = config_frame_cap(conf);
    shard.supervisor = getppid();
    shard.beat = beat;
    crash_install(index, beat);
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
    shard.loop = loop_create();
    shard.tick.cb = on_tick;
    loop_timer_start(shard.loop, &shard.tick, TICK_MS);
    shard.ctl = loop_watch(shard.loop, ctl_fd, on_ctl, NULL);
    shard.sig = loop_watch(shard.loop, sfd, on_signal, NULL);
    if (shard.ctl == NULL || shard.sig == NULL) {
        log_error("epoll: %s", strerror(errno));
        return 1;
    }
    loop_set_before_sleep(shard.loop, end_of_pass, NULL);
    alarm_timer_open();
    rooms_init(conf, shard.store);
    log_info("started (storage %s, durability %s)", path, conf->durability);

    /* the loop turns at least every TICK_MS; the supervisor calls it stalled when it has not for timers.stall_ms. The
     * end of each pass (one commit for every write, then everything the rooms produced in one write) is the loop's
     * before-sleep hook (end_of_pass); pass_next then starts the next pass's budget, and says when frames that waited
     * were decoded, so that the loop must not sleep before their pass ends. */
    beat_turn(shard.beat);
    int busy = 0;
    while (!shard.stop) {
        if (loop_run_once(shard.loop, busy ? 0 : -1) != 0) {
            log_error("epoll_wait: %s; stopping", strerror(errno));
            shard.status = 1;
            break;
        }
        beat_turn(shard.beat);
        busy = pass_next();
    }
    beat_stopping(shard.beat);

    shard_event_begin();
    rooms_dispose();
    commit_pass();
    if (shard.orphaned)
        await_reparenting();
    if (shard.link != NULL) {
        link_flush(shard.link);
        link_close(shard.link);
    }
    loop_timer_stop(&shard.tick);
    store_close(shard.store);
    gate_free(shard.gate);
    free(shard.pass_arrivals.ids);
    if (shard.ctl != NULL)
        loop_unwatch(shard.ctl);
    close(ctl_fd);
    loop_unwatch(shard.sig);
    close(sfd);
    if (shard.alarm_timer != NULL) {
        close(loop_watch_fd(shard.alarm_timer));
        loop_unwatch(shard.alarm_timer);
    }
    loop_destroy(shard.loop);
    log_info("stopped");
    return shard.status;
}
