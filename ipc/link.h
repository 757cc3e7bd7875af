/*
 * link.h — one router⇄shard link: proto.h frames over a Unix stream socket, on whichever event loop its owner runs
 * (h2o's in the router, loop.h's in a shard).
 *
 * ipc/ (above proto/, below router/ and shard/; no h2o) is how the processes talk:
 *   link.c    this header: the router⇄shard links
 *   ctl.c     the control sockets between the supervisor and its children (ctl.h)
 *   beat.c    a shard's heartbeat page, shared with the supervisor (beat.h)
 *   child.c   what a child does with its control socket and SIGTERM, for either loop (child.h)
 *   loop.c    the small epoll loop of the processes that do not run h2o (loop.h)
 *   meson.build  the folder's library
 *
 * The link does its own non-blocking reads and writes on the socket; the owner's loop only says when the socket is
 * readable or writable, through the link_io_t the owner passes to link_open. So the link knows no loop.
 * The link owns the socket, a decoder and an output buffer: frames are appended to it and written once per loop pass
 * (link_flush), so a pass that produces a thousand frames costs one write().
 * The first frame each way is HELLO; a peer with another PROTO_VERSION or the wrong role is refused.
 *
 * Every function here is called on the owner's loop (one thread; none is thread-safe). The link_t is the owner's from
 * link_open until link_close or on_closed, after which it is freed. Errors are returned as -errno where a function
 * returns int; I/O failures are reported once, through on_closed; out of memory aborts (base.h).
 */
#ifndef PARTYD_LINK_H
#define PARTYD_LINK_H

#include "proto.h"

typedef struct st_link_t link_t;

typedef struct st_link_callbacks_t {
    /* The peer's HELLO arrived and was accepted. */
    void (*on_hello)(link_t *link, const proto_msg_t *hello);
    /* A frame after HELLO. `msg` points into the link's input: valid until the callback returns. */
    void (*on_frame)(link_t *link, const proto_msg_t *msg);
    /* The link failed (EOF, I/O error, malformed frame, refused HELLO); `why` says how. The link is freed right after
     * this returns. Not called for link_close. */
    void (*on_closed)(link_t *link, const char *why);
    /* The backlog fell back under LINK_LOW_WATER after link_congested said yes. May be NULL. */
    void (*on_drained)(link_t *link);
} link_callbacks_t;

/* Backpressure: a sender that finds the link congested stops producing (the router stops reading the clients that
 * feed it) until on_drained. */
#define LINK_HIGH_WATER (8 << 20)
#define LINK_LOW_WATER (2 << 20)

/* How the owner's loop watches a link's socket. */
typedef struct st_link_io_t {
    /* Starts watching `fd` on `loop` for reading and returns the owner's handle of it: from then on the owner calls
     * link_on_readable(link) whenever the fd is readable. */
    void *(*watch)(void *loop, int fd, link_t *link);
    /* Asks for one link_on_writable(link) call once the fd is writable (on = 1), or no more (on = 0). */
    void (*want_write)(void *handle, int on);
    /* Stops (on = 0) or starts again (on = 1) the link_on_readable calls for data to read (link_read_stop); a hang-up
     * or an error may still be reported while stopped. */
    void (*want_read)(void *handle, int on);
    /* Stops watching and closes the fd. No link_on_* call follows. */
    void (*close)(void *handle);
} link_io_t;

/* The link_io_t of loop.h's loop (a shard's): `loop` is a loop_t *. */
extern const link_io_t link_io_loop;

/* Wraps `fd` (ownership passes to the link: `io` closes it when the link is freed) and sends our HELLO. `max_frame`
 * caps every frame in both directions. `io` and `loop` outlive the link. */
link_t *link_open(const link_io_t *io, void *loop, int fd, size_t max_frame, proto_role_t role, int shard,
                  const link_callbacks_t *cb, void *data);
/* The owner's loop saw the socket readable: the link reads what is there and runs on_hello/on_frame for every whole
 * frame, or on_closed when the peer went away (then the link is freed). */
void link_on_readable(link_t *link);
/* The socket became writable after io->want_write: the link writes what waits. May fail the link (on_closed). */
void link_on_writable(link_t *link);
/* Closes the socket and frees the link. Safe inside the link's own on_frame (the free is deferred until it returns);
 * on_closed is not called. */
void link_close(link_t *link);

/* Queues a frame; it is written by the next link_flush. Returns 0, -EMSGSIZE (over the frame cap, nothing queued), or
 * -ENOTCONN after the link failed. */
int link_emit(link_t *link, const proto_msg_t *msg);
/* The output gate's tools (shard.c): where the queued bytes end now; moving what was queued after such a mark into
 * another buffer (it has not been written: nothing is written between two loop passes' flushes); and queuing bytes
 * that are already encoded frames. */
size_t link_out_mark(const link_t *link);
void link_take_tail(link_t *link, size_t mark, base_buf_t *dst);
void link_emit_raw(link_t *link, const void *frames, size_t len);
/* Taking back a frame nobody waits for any more (the router: a request whose client went away while its shard was
 * slow). link_emit_ticket is link_emit that also says where the frame sits in the output; link_cancel removes it, if
 * no byte of it was written yet, and returns 0, or -EALREADY when it was written in part or whole (the peer will get
 * it), or -ENOTCONN after the link failed. A ticket is valid for the link that gave it, and only once. The memory of a
 * queue mostly taken back is given back at once; on_drained is not called from here (it follows the next write). */
typedef struct st_link_ticket_t {
    uint64_t pos; /* where the frame starts, counting every byte ever queued on the link */
    size_t len;
} link_ticket_t;
int link_emit_ticket(link_t *link, const proto_msg_t *msg, link_ticket_t *ticket);
int link_cancel(link_t *link, const link_ticket_t *ticket);
/* Writes what was queued, as far as the socket takes it (the rest goes when it is writable). Once per pass. A write
 * that fails fails the link: on_closed runs and the link is freed, so do not touch it after this returns. */
void link_flush(link_t *link);
/* Whether more than LINK_HIGH_WATER bytes wait; once it said yes, on_drained follows when they fall under
 * LINK_LOW_WATER. */
int link_congested(link_t *link);
/* Bounding a pass's work (the shard): link_read_stop, called in on_frame or outside it, ends the decoding after the
 * current frame and stops reading the socket; the frames already read stay in the input. link_read_resume, called
 * outside on_frame only (the shard's loop, between passes), decodes what is already in the input first (on_frame may
 * stop the link again) and then reads the socket again. It returns 0, or -1 when the link was freed meanwhile (closed
 * from on_frame, a malformed frame: on_closed ran). link_read_is_stopped says whether frames wait for a resume. */
void link_read_stop(link_t *link);
int link_read_resume(link_t *link);
int link_read_is_stopped(const link_t *link);
/* Bytes queued and not yet written. */
size_t link_backlog(const link_t *link);
/* Whether the peer's HELLO has arrived. */
int link_is_ready(const link_t *link);
/* The `data` given to link_open (the owner's). */
void *link_data(const link_t *link);

#endif
