/* Text from files, paths and requests for JSON answers. jansson refuses a
 * string that is not UTF-8; a file name, an error message quoting a file or
 * an endpoint may not be, and must still be shown, not turned into an
 * "out of memory" answer or a missing key. */
#include "mock.h"

#include "utf8.h"

#include <stdlib.h>
#include <string.h>

json_t *mock_json_text(const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    /* not UTF-8: each bad byte becomes U+FFFD (a NUL stays \u0000) */
    char *clean = malloc(len * 3 + 1);
    if (!clean)
        return NULL;
    size_t n = 0;
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = tch_utf8_decode(p + i, len - i, &cp);
        if (l == 0) {
            memcpy(clean + n, "\xef\xbf\xbd", 3);
            n += 3;
            i++;
            continue;
        }
        memcpy(clean + n, p + i, l);
        n += l;
        i += l;
    }
    j = json_stringn(clean, n);
    free(clean);
    return j;
}
