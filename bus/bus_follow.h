/*  bus_follow.h — follow publishers' events: each event reaches the
    callback exactly once, in each publisher's seq order, with nothing lost
    in silence.

    A follower has one or more sources (publishers: a SUB on the
    publisher's PUB and calls to its ROUTER for events.replay) and keeps,
    per source, its mark: the last seq it has applied (L). It implements
    PROTOCOL.md 6.4:

      - an event with seq <= L is a duplicate and is dropped; seq = L + 1
        is applied; seq > L + 1 is a gap: the live events ahead are held
        and the missing ones are fetched with events.replay (paged: every
        page is applied before the next is asked for, from L + 1);
      - events are also replayed when a source is added (on connect: the
        SUB subscribes first, so the overlap is removed by seq), after a
        service.started of the publisher (a restart: what it committed and
        had not yet published comes through replay), and on a timer
        (replay_ms: a tail lost with nothing after it, and the publisher's
        outbox_acked_by record kept fresh);
      - events the publisher no longer keeps (below the reply's first_seq:
        trimmed from its outbox) are a loss: an error in the log, the
        counter follow_events_lost, and the loss callback — never skipped
        in silence. The mark then moves past them; in durable mode
        record_loss writes the loss in that same transaction (the
        auditor's gap entry).

    A publisher's seq never goes back (PROTOCOL.md 6.3); one whose
    last_seq is below the mark (its store was reset) is logged as an error
    and counted (follow_publisher_behind) at every replay: its events up
    to the mark are taken for duplicates.

    The SUB subscribes to every type (seq counts all of a publisher's
    events, so a filtered SUB would see a gap at every other type); topics
    filter what reaches the callback, and the mark moves over the rest.
    In durable mode a run of events none of which a topic lets through (or
    that the callback answered BUS_FOLLOW_NOTHING, having written nothing)
    moves the mark in memory only (no transaction, no fsync): it is
    committed with the next event applied, or once it is 1000 events or
    1 s ahead of the committed one; a crash then replays those events and
    skips them again. (A follower without topics, like the auditor, which
    is the publishers' outbox_acked_by, commits every run as below.)

    Durable mode (opts.store set): the callback runs inside a write
    transaction of that store, in which the follower also writes its mark
    for the source (db opts.db, key "<name>/<source>", an 8-byte big-endian
    seq), so the event's effect and "seen up to N" commit together: a
    crash of the follower or of the publisher loses nothing and applies
    nothing twice. Events that come together (a burst read in one wake-up,
    a replay page) are applied in one transaction, one fsync. Replays ask
    from the committed mark + 1 only, so a follower whose principal is the
    publishers' outbox_acked_by never lets them trim an event it has not
    stored. The commit (and its fsync) runs on the reactor; a callback
    that appended events (bus_event_append) gets them published when the
    follower was made with opts.svc (bus_service_commit).

    Memory mode (opts.store NULL): marks live in memory (telemetry, tap);
    the callback gets txn NULL. opts.from_now starts each source at the
    publisher's last_seq (asked with `health`) instead of replaying all it
    keeps. A memory-mode follower must not use the publishers'
    outbox_acked_by principal: its replays would tell them it has stored
    what it has not.

    Thread: everything runs on the thread of the zloop (the reactor),
    callbacks included. Ownership: cert, store and svc are borrowed and
    must outlive the follower; an event is lent to the callback for its
    duration. Destroy the follower before the zloop (and before the
    store).
*/
#ifndef BUS_FOLLOW_H
#define BUS_FOLLOW_H

#include <czmq.h>

#include "bus_config.h"
#include "bus_service.h"
#include "bus_stats.h"
#include "bus_store.h"
#include "proto_msg.h"

#define BUS_FOLLOW_DB          "follow"   /* the default db of the marks */
#define BUS_FOLLOW_SOURCES_MAX 16
#define BUS_FOLLOW_HELD_MAX    100000     /* live events held ahead of a gap, per source */

typedef struct bus_follow_t bus_follow_t;

/*  Apply one event (its seq is the source's mark + 1; its type matches
    the topics). txn is the write transaction of the store in durable mode
    (write the event's effect in it; do not commit or abort it), NULL in
    memory mode. Return 0 when applied; a negative BUS_E* error for a
    failure that may pass (store full, I/O): the transaction is aborted
    (with the events applied with it), the mark stays, and the events come
    again by replay after replay_ms. An event that can never be applied
    must be dealt with (logged, recorded) and answered 0, or it will come
    back for ever. Return BUS_FOLLOW_NOTHING when the event asked for no
    write (not one the follower keeps anything of) and nothing was written
    in txn for it: a batch of such events commits nothing, its mark moves
    in memory as over events no topic lets through (a filter finer than
    the topics, decided in the store). */
#define BUS_FOLLOW_NOTHING 1
typedef int (bus_follow_fn) (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg);

/*  Events from_seq..to_seq of source (its publisher's principal: pub) are
    lost: trimmed from the publisher's outbox before this follower stored
    them. Called before the mark moves past them (in durable mode a crash
    before that commit reports the loss again). */
typedef void (bus_follow_loss_fn) (bus_follow_t *follow, const char *source, const char *pub,
                                   uint64_t from_seq, uint64_t to_seq, void *arg);

/*  Durable mode: record the loss of events from_seq..to_seq of source
    (publisher pub) in txn, the write transaction in which the mark moves
    past them (before the events that follow them in it), so the record
    and the mark commit together. Called after the loss callback; return
    0, or a negative BUS_E* error: the transaction is aborted, and the
    loss is reported and recorded again after replay_ms. */
typedef int (bus_follow_record_loss_fn) (bus_follow_t *follow, bus_txn_t *txn, const char *source,
                                         const char *pub, uint64_t from_seq, uint64_t to_seq,
                                         void *arg);

typedef struct {
    const char *name;               /* the follower's name (1..64 bytes): its marks' keys, its logs */
    const char *const *topics;      /* type prefixes that reach fn; NULL or empty: every type */
    bus_follow_fn *fn;              /* required */
    bus_follow_loss_fn *loss;       /* may be NULL (the loss is still logged and counted) */
    bus_follow_record_loss_fn *record_loss;  /* durable mode; may be NULL */
    void *arg;                      /* for fn, loss and record_loss */
    bus_store_t *store;             /* durable mode: the marks' store; NULL: memory mode */
    const char *db;                 /* durable: the marks' db among the store's; NULL: BUS_FOLLOW_DB */
    bool from_now;                  /* memory mode: start at each publisher's last_seq */
    int replay_ms;                  /* the replay timer; 0: 1000 */
    bus_stats_t *stats;             /* counters follow_applied, follow_replays, follow_gaps,
                                       follow_events_lost, follow_apply_failed,
                                       follow_publisher_behind; may be NULL */
} bus_follow_opts_t;

/*  A follower on loop, authenticating to the publishers with cert (an
    svc: or ops: principal: events.replay needs one). opts is copied (the
    strings too). Returns NULL on a bad option or a missing db (logged). */
bus_follow_t *bus_follow_new (zloop_t *loop, zcert_t *cert, const bus_follow_opts_t *opts);

/*  A follower of the service svc: its reactor, cert and stats; durable
    (opts.store NULL is replaced by svc's store, which must have opts.db
    among its db_names) unless memory is true; commits through
    bus_service_commit, so events the callback appends are published. */
bus_follow_t *bus_follow_for (bus_service_t *svc, const bus_follow_opts_t *opts, bool memory);

/*  Stop following (no callback afterwards), free. Accepts NULL; nulls
    *self_p. Not from inside one of its own callbacks. */
void bus_follow_destroy (bus_follow_t **self_p);

/*  Follow the publisher named source (1..64 bytes, unique in this
    follower) at pub (its PUB) and rpc (its ROUTER) whose public key is
    server_key (Z85); its events must carry pub = principal when principal
    is not NULL ("svc:authz"). Loads the mark (durable), subscribes, and
    asks for what it missed. Returns 0, BUS_EINVAL (bad argument, a source
    of that name already), BUS_EFULL (BUS_FOLLOW_SOURCES_MAX sources),
    BUS_EIO (the mark cannot be read), BUS_ENOMEM. */
int bus_follow_add (bus_follow_t *self, const char *source, const char *principal,
                    const char *pub, const char *rpc, const char *server_key,
                    int timeout_ms, int retries);

/*  Follow the service ("authz", "ciba-broker") as the config names it:
    its pub and rpc endpoints, its key from keys_dir, [sanctum]
    rpc_timeout_ms, rpc_retries and max_frame. Returns as bus_follow_add,
    or BUS_ECONFIG (unknown service, no key). */
int bus_follow_add_service (bus_follow_t *self, bus_config_t *config, const char *service);

/*  A source's mark (the last seq applied; durable: committed, or ahead
    of the committed one over events no topic let through), 0 when none
    or no such source. */
uint64_t bus_follow_mark (bus_follow_t *self, const char *source);

/*  Events applied (reached fn or were stepped over by the topics) and
    events lost, over all sources since the follower was made. */
uint64_t bus_follow_applied (bus_follow_t *self);
uint64_t bus_follow_lost (bus_follow_t *self);

/*  Whether every source is caught up: known mark, no replay in flight, no
    event held. */
bool bus_follow_idle (bus_follow_t *self);

#endif
