/* Text from files, paths and requests for JSON answers. jansson refuses a
 * string that is not UTF-8; a file name, an error message quoting a file or
 * an endpoint may not be, and must still be shown, not turned into an
 * "out of memory" answer or a missing key. */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    size_t len = p[0] < 0x80 ? 1 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : p[0] >= 0xe0 && p[0] < 0xf0 ? 3
               : p[0] >= 0xf0 && p[0] < 0xf5                 ? 4
                                                              : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    uint32_t cp = len == 1 ? p[0] : len == 2 ? (p[0] & 0x1fu) : len == 3 ? (p[0] & 0x0fu) : (p[0] & 0x07u);
    for (size_t i = 1; i < len; i++)
        cp = cp << 6 | (p[i] & 0x3fu);
    /* overlong, surrogates, beyond U+10FFFF */
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

json_t *mock_json_text(const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    /* not UTF-8: each bad byte becomes U+FFFD (a NUL stays \u0000) */
    char *clean = malloc(len * 3 + 1);
    if (!clean)
        return NULL;
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t l = utf8_seq(p + i, len - i);
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
