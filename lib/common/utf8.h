/* UTF-8, one code point at a time. Internal to the project; not installed. */
#ifndef TCH_UTF8_H
#define TCH_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length of the valid UTF-8 sequence at s (at most n bytes), its code
 * point in *cp; 0 when invalid (overlong, a surrogate, beyond U+10FFFF,
 * or cut short). */
size_t tch_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Writes cp (at most U+10FFFF, not checked further) as 1 to 4 bytes at out;
 * returns how many. */
size_t tch_utf8_encode(uint32_t cp, char *out);

#endif
