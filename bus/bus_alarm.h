/*  bus_alarm.h — zloop timers that can be ended from any handler.

    CZMQ's zloop_timer_end does not take the timer out at once: it queues
    the id, and the loop removes queued timers only after the pass that
    is running has called its timers and readers. A timer that is due in
    that pass still fires after it was ended, when the handler that ended
    it was another timer's, earlier in the same pass (or when it was ended
    before the loop ever ran). Its argument is then usually freed: the
    orchestrator answered a run.wait from freed memory when a call's
    deadline tick paused the run in the same pass as the wait's own
    timeout fired (a loaded machine wakes late, with both due).

    A bus_alarm_t calls its handler only while it has not been ended,
    whatever the pass: ending marks it, and its memory is kept until the
    loop can no longer call it (a 0 ms timer of the loop frees it on a
    later turn, after CZMQ removed the ended one).

    Reactor thread only, as zloop.
*/
#ifndef BUS_ALARM_H
#define BUS_ALARM_H

#include <czmq.h>

typedef struct bus_alarm_t bus_alarm_t;

/*  Called when the timer is due; -1 ends the loop (as a zloop handler),
    0 goes on. */
typedef int (bus_alarm_fn) (zloop_t *loop, void *arg);

/*  Call fn (loop, arg) every delay_ms, times times (0: until ended), on
    loop (borrowed). NULL when out of memory. The owner ends it with
    bus_alarm_end, also once it has fired its last time (a timer of 1
    time is usually ended first thing in its own handler). */
bus_alarm_t *bus_alarm_new (zloop_t *loop, size_t delay_ms, size_t times, bus_alarm_fn *fn, void *arg);

/*  End the timer: its handler is not called again, even when it is due
    in the pass of the loop that is running now. From anywhere on the
    loop's thread, the timer's own handler included, and before or after
    the loop runs. Sets *self_p to NULL; accepts NULL and *NULL. */
void bus_alarm_end (bus_alarm_t **self_p);

/*  Whether the timer is still to fire (armed, not ended, times left).
    Accepts NULL (false). */
bool bus_alarm_armed (const bus_alarm_t *self);

#endif
