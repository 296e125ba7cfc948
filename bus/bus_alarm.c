/*  bus_alarm.c — zloop timers that can be ended from any handler (see
    bus_alarm.h).

    Each timer is a CZMQ timer whose argument is the bus_alarm_t. Ending
    one marks it (its handler is skipped from then on) and asks CZMQ to
    end it; the memory stays until CZMQ can no longer call it: a 0 ms
    timer, registered after the ended one, frees it. CZMQ calls its timers
    in the order they were made and removes ended ones at the end of each
    pass, so by the time that 0 ms timer runs, the ended one has either
    been passed over for the last time (in the same pass) or removed (at
    the end of an earlier one).

    A timer ended once the loop has stopped is removed by CZMQ at once
    and its 0 ms timer never runs: its memory stays on the list below,
    still referenced (a few dozen bytes per timer ended at shutdown).
*/
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "bus_alarm.h"

struct bus_alarm_t {
    zloop_t *loop;
    int id;                         /* CZMQ's */
    bus_alarm_fn *fn;
    void *arg;
    size_t times;                   /* 0: for ever */
    size_t left;                    /* calls left when times > 0 */
    bool firing;                    /* inside fn */
    bool ended;
    bus_alarm_t *prev, *next;       /* on s_ended while it waits to be freed */
};

/*  Ended timers waiting for their 0 ms timer (all loops, all threads). */
static pthread_mutex_t s_ended_lock = PTHREAD_MUTEX_INITIALIZER;
static bus_alarm_t *s_ended;

static int
s_free_ended (zloop_t *loop, int timer_id, void *arg)
{
    bus_alarm_t *self = arg;
    pthread_mutex_lock (&s_ended_lock);
    if (self->prev)
        self->prev->next = self->next;
    else
        s_ended = self->next;
    if (self->next)
        self->next->prev = self->prev;
    pthread_mutex_unlock (&s_ended_lock);
    free (self);
    return 0;
}

static void
s_free_later (bus_alarm_t *self)
{
    pthread_mutex_lock (&s_ended_lock);
    self->prev = NULL;
    self->next = s_ended;
    if (s_ended)
        s_ended->prev = self;
    s_ended = self;
    pthread_mutex_unlock (&s_ended_lock);
    zloop_timer (self->loop, 0, 1, s_free_ended, self);    /* out of memory: it stays listed */
}

static int
s_fire (zloop_t *loop, int timer_id, void *arg)
{
    bus_alarm_t *self = arg;
    if (self->ended)
        return 0;                   /* due in the pass that ended it */
    bool last = self->times && self->left == 1;
    if (self->times)
        self->left--;
    self->firing = true;
    int rc = self->fn (loop, self->arg);
    self->firing = false;
    if (self->ended && last)
        free (self);                /* ended in its last call: CZMQ removes it now */
    return rc;
}

bus_alarm_t *
bus_alarm_new (zloop_t *loop, size_t delay_ms, size_t times, bus_alarm_fn *fn, void *arg)
{
    bus_alarm_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->fn = fn;
    self->arg = arg;
    self->times = times;
    self->left = times;
    self->id = zloop_timer (loop, delay_ms, times, s_fire, self);
    if (self->id < 0) {
        free (self);
        return NULL;
    }
    return self;
}

void
bus_alarm_end (bus_alarm_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_alarm_t *self = *self_p;
    *self_p = NULL;
    self->ended = true;
    if (self->times && self->left == 0) {
        /*  Fired its last time: CZMQ has removed it, or does when the
            call running it returns (s_fire frees it then). */
        if (!self->firing)
            free (self);
        return;
    }
    zloop_timer_end (self->loop, self->id);
    s_free_later (self);
}

bool
bus_alarm_armed (const bus_alarm_t *self)
{
    return self && !self->ended && (!self->times || self->left > 0);
}
