// Reference check: our C farmhash Fingerprint32 (lib/wire/checksum.c) against
// Debian's libfarmhash util::Fingerprint32 for every length 0..2000 on
// pseudo-random bytes (several seeds, so both high and low bytes occur;
// lengths 0..4 read bytes as signed char, which this catches).
// Exit status 0 when all agree; prints the first mismatch otherwise.
#include <farmhash.h>

#include <cstdint>
#include <cstdio>
#include <vector>

extern "C" uint32_t tch_farmhash32(const uint8_t *data, size_t len);

static uint64_t next(uint64_t *s) {  // xorshift64*
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

int main() {
  size_t checked = 0;
  for (uint64_t seed = 1; seed <= 8; seed++) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull;
    std::vector<uint8_t> buf(2001);
    for (auto &b : buf) b = static_cast<uint8_t>(next(&s) >> 56);
    for (size_t len = 0; len <= 2000; len++) {
      // vary the start so unaligned reads are exercised too
      const uint8_t *p = buf.data() + (len % 2 == 0 ? 0 : 1) * (len < 2000);
      uint32_t want = util::Fingerprint32(reinterpret_cast<const char *>(p), len);
      uint32_t got = tch_farmhash32(p, len);
      if (want != got) {
        std::printf("MISMATCH seed %llu len %zu: util %u, ours %u\n",
                    static_cast<unsigned long long>(seed), len, want, got);
        return 1;
      }
      checked++;
    }
  }
  const char hello[] = "hello";
  uint32_t h = tch_farmhash32(reinterpret_cast<const uint8_t *>(hello), 5);
  if (h != 2039911270u || util::Fingerprint32(hello, 5) != 2039911270u) {
    std::printf("fingerprint32(\"hello\") = %u, want 2039911270\n", h);
    return 1;
  }
  std::printf("farmhash_check: %zu inputs agree with util::Fingerprint32\n",
              checked);
  return 0;
}
