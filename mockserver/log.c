/* Log lines go to stderr, one line each, so a test or an operator can grep
 * them; messages from the cassette library may hold newlines and are folded. */
#include "mock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void mock_log(const char *fmt, ...) {
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    /* one fputs per line: lines from one process never interleave */
    char out[4200];
    snprintf(out, sizeof out, "tchannel-mock: %s\n", line);
    fputs(out, stderr);
}

uint64_t mock_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *mock_scheme_name(int scheme) {
    switch (scheme) {
    case TCH_CASSETTE_JSON:
        return "json";
    case TCH_CASSETTE_THRIFT:
        return "thrift";
    default:
        return "raw";
    }
}
