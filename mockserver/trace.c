/* The mock's own spans: each traced request it answers (the caller set the
 * traced flag) becomes a SERVER span, and each call it makes onward for one
 * (relayed, recorded through) a CLIENT span, posted to a Zipkin collector
 * (--trace-to URL) and/or appended as a JSON line to a file (--trace-file
 * PATH). */
#include "mock.h"

#include <tchannel/trace.h>

#include <event2/event.h>

#include <stdlib.h>

/* How long the exit waits for the last POST to the collector. */
#define MOCK_TRACE_FLUSH_MS 2000

typedef struct mock_trace {
    tch_tracer *tracer;
    tch_zipkin_reporter *zipkin;
    tch_file_reporter *file;
    int flushed;
} mock_trace;

static void fan_out(const tch_span *span, void *ud) {
    mock_trace *t = ud;
    if (t->zipkin) {
        tch_span_reporter r = tch_zipkin_reporter_iface(t->zipkin);
        r.report(span, r.ud);
    }
    if (t->file) {
        tch_span_reporter r = tch_file_reporter_iface(t->file);
        r.report(span, r.ud);
    }
}

static void trace_free(mock *m) {
    mock_trace *t = m->trace;
    if (!t)
        return;
    tch_tracer_free(t->tracer); /* before the channel, which the mock frees later */
    tch_zipkin_reporter_free(t->zipkin);
    if (t->file)
        tch_file_reporter_close(t->file, NULL);
    free(t);
    m->trace = NULL;
}

int mock_trace_start(mock *m, tch_error *err) {
    const mock_config *c = m->cfg;
    if (!c->trace_to && !c->trace_file)
        return 0;
    mock_trace *t = m->trace = calloc(1, sizeof *t);
    if (!t)
        return tch_error_set(err, TCH_ENOMEM, "out of memory");
    if (c->trace_to && tch_zipkin_reporter_new(m->base, c->trace_to, NULL, &t->zipkin, err)) {
        trace_free(m);
        return tch_error_wrap(err, "--trace-to");
    }
    if (c->trace_file && tch_file_reporter_open(c->trace_file, &t->file, err)) {
        trace_free(m);
        return tch_error_wrap(err, "--trace-file");
    }
    if (tch_tracer_new(m->ch, (tch_span_reporter){fan_out, t}, &t->tracer, err)) {
        trace_free(m);
        return err->code;
    }
    return 0;
}

tch_tracer *mock_trace_attach(mock *m, tch_channel *ch) {
    if (!m->trace || !ch)
        return NULL;
    tch_error err = {0};
    tch_tracer *tr;
    if (tch_tracer_new(ch, (tch_span_reporter){fan_out, m->trace}, &tr, &err))
        mock_log("tracing: the spans of our calls onward are not reported: %s", err.msg);
    return tr;
}

static void zipkin_closed(tch_zipkin_reporter *z, void *ud) {
    (void)z;
    ((mock_trace *)ud)->flushed = 1;
}

void mock_trace_finish(mock *m) {
    mock_trace *t = m->trace;
    if (!t)
        return;
    tch_tracer_free(t->tracer);
    t->tracer = NULL;
    if (t->zipkin &&
        tch_zipkin_reporter_close(t->zipkin, MOCK_TRACE_FLUSH_MS, zipkin_closed, t) == 0) {
        /* the loop has ended: run it again just for the last POST (bounded
         * by the close timeout, which always calls back) */
        while (!t->flushed && event_base_loop(m->base, EVLOOP_ONCE) == 0)
            ;
        tch_zipkin_stats st;
        tch_zipkin_reporter_stats(t->zipkin, &st);
        mock_log("spans: %llu sent to %s, %llu failed, %llu dropped%s%s",
                 (unsigned long long)st.sent, m->cfg->trace_to, (unsigned long long)st.failed,
                 (unsigned long long)st.dropped,
                 *tch_zipkin_reporter_last_error(t->zipkin) ? "; last error: " : "",
                 tch_zipkin_reporter_last_error(t->zipkin));
    }
    if (t->file) {
        tch_error err;
        if (tch_file_reporter_close(t->file, &err) != 0)
            mock_log("%s", err.msg);
        t->file = NULL;
    }
    trace_free(m);
}
