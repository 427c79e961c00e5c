/* Test helpers: run an event loop until something happened, with a bound.
 * Tests never sleep; they wait on the event itself. */
#ifndef TCH_TEST_LOOP_H
#define TCH_TEST_LOOP_H

#include <event2/event.h>

static inline void tch_test_bound_fired(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    *(int *)arg = 1;
}

/* Runs base until *count reaches want or ms milliseconds pass.
 * Returns 1 when it got there, 0 on the bound. */
static inline int tch_test_run_until_count(struct event_base *base,
                                           const int *count, int want, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int expired = 0;
    struct event *t = evtimer_new(base, tch_test_bound_fired, &expired);
    evtimer_add(t, &tv);
    while (*count < want && !expired) {
        if (event_base_loop(base, EVLOOP_ONCE) != 0)
            break;
    }
    event_free(t);
    return *count >= want;
}

/* Runs base until *flag becomes non-zero or ms milliseconds pass. */
static inline int tch_test_run_until(struct event_base *base, const int *flag,
                                     int ms) {
    return tch_test_run_until_count(base, flag, 1, ms);
}

#endif
