/* Reload on change: a libevent timer polls each cassette file's mtime, ctime,
 * size and inode (portable, no inotify, and cheap at a few files every
 * 500 ms). Our own saves update the remembered state (store.c), so they do
 * not reload. */
#include "mock.h"

#include <event2/event.h>

/* Returns 1 when the file differs from what we last read or wrote, and from
 * the version a load already failed on. A file that disappeared is not
 * reloaded: the last version keeps serving (an editor may be replacing it). */
static int changed(const mock_cassette *mc) {
    return mock_file_worth_reloading(mc);
}

size_t mock_watch_check(mock *m, int force) {
    size_t reloaded = 0;
    for (size_t i = 0; i < m->store.n; i++) {
        mock_cassette *mc = m->store.items[i];
        if (!force && !changed(mc))
            continue;
        tch_error err = {0};
        int rc = mock_store_reload(m, mc, &err);
        if (rc == 0) {
            reloaded++;
            mock_log("reloaded %s (%zu interactions)", mc->path, tch_cassette_count(mc->c));
        } else if (rc != TCH_ESTATE) { /* ESTATE: deferred, retried on the next tick */
            mock_log("reload %s failed, still serving the last good version: %s", mc->path,
                     err.msg);
        }
    }
    return reloaded;
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    mock *m = arg;
    if (!m->shutting_down)
        mock_watch_check(m, 0);
}

int mock_watch_start(mock *m) {
    if (!m->cfg->watch)
        return 0;
    m->watch_timer = event_new(m->base, -1, EV_PERSIST, on_tick, m);
    if (!m->watch_timer)
        return TCH_ENOMEM;
    struct timeval tv = {m->cfg->watch_ms / 1000, (m->cfg->watch_ms % 1000) * 1000};
    return event_add(m->watch_timer, &tv) ? TCH_EIO : 0;
}
