// RAID-6 P+Q parity over GF(2^8) (generator {02}, polynomial 0x11D), in C. The word-parallel
// JavaScript version in src/raid/gf.ts (kept as the reference and the fallback) runs at about
// 1.1 GB/s of data here and was the largest cost left on the daemon's main thread while writing;
// this loop is plain C that the compiler vectorizes. Same results: test/raid checks both.
#define _GNU_SOURCE
#include "hoardfs_args.h"
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_STRIPS 256

static inline uint64_t load64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void store64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint64_t mul2w(uint64_t v) {
  return ((v & 0x7f7f7f7f7f7f7f7fULL) << 1) ^ (((v >> 7) & 0x0101010101010101ULL) * 0x1d);
}
static inline uint8_t mul2b(uint8_t v) { return (uint8_t)((v << 1) ^ ((v & 0x80) ? 0x1d : 0)); }

// P = xor of all strips; Q = sum of g^i * D_i, by Horner's rule from the last strip down.
// Blocks of 4 KiB keep P and Q in L1 while every strip streams past them.
static void pq(const uint8_t *const *d, size_t n, size_t len, uint8_t *p, uint8_t *q) {
  const size_t B = 4096;
  for (size_t at = 0; at < len; at += B) {
    size_t m = len - at < B ? len - at : B;
    memcpy(p + at, d[n - 1] + at, m);
    if (q) memcpy(q + at, d[n - 1] + at, m);
    for (size_t i = n - 1; i-- > 0;) {
      const uint8_t *s = d[i] + at;
      uint8_t *pp = p + at;
      size_t k = 0;
      if (q) {
        uint8_t *qq = q + at;
        for (; k + 8 <= m; k += 8) {
          uint64_t v = load64(s + k);
          store64(pp + k, load64(pp + k) ^ v);
          store64(qq + k, mul2w(load64(qq + k)) ^ v);
        }
        for (; k < m; k++) {
          pp[k] ^= s[k];
          qq[k] = mul2b(qq[k]) ^ s[k];
        }
      } else {
        for (; k + 8 <= m; k += 8) store64(pp + k, load64(pp + k) ^ load64(s + k));
        for (; k < m; k++) pp[k] ^= s[k];
      }
    }
  }
}

static int u8(napi_env env, napi_value v, uint8_t **ptr, size_t *len) {
  return typed_arg(env, v, napi_uint8_array, (void **)ptr, len);
}

// pq(strips: Uint8Array[], p: Uint8Array, q: Uint8Array | null): all the same length.
static napi_value js_pq(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t n = 0;
  bool isArray = false;
  if (argc < 3 || napi_is_array(env, argv[0], &isArray) != napi_ok || !isArray || napi_get_array_length(env, argv[0], &n) != napi_ok || n == 0 || n > MAX_STRIPS) {
    napi_throw_type_error(env, NULL, "pq: 1 to 256 strips expected");
    return NULL;
  }
  const uint8_t *d[MAX_STRIPS];
  uint8_t *p, *q = NULL;
  size_t len, l;
  if (!u8(env, argv[1], &p, &len)) {
    napi_throw_type_error(env, NULL, "pq: p must be a Uint8Array");
    return NULL;
  }
  napi_valuetype qt;
  napi_typeof(env, argv[2], &qt);
  if (qt != napi_null && qt != napi_undefined) {
    if (!u8(env, argv[2], &q, &l) || l != len) {
      napi_throw_type_error(env, NULL, "pq: q must be a Uint8Array as long as p");
      return NULL;
    }
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    uint8_t *s;
    if (napi_get_element(env, argv[0], i, &e) != napi_ok || !u8(env, e, &s, &l) || l != len) {
      napi_throw_type_error(env, NULL, "pq: every strip must be a Uint8Array as long as p");
      return NULL;
    }
    d[i] = s;
  }
  pq(d, n, len, p, q);
  return NULL;
}

// readCached(fd, buf, pos) -> bytes read, or -errno. A device read that the page cache can
// answer costs a few microseconds on the JS thread; through libuv's pool it cost a thread hop
// each way, and a random 4 KiB read on RAID 6 waits for several. RWF_NOWAIT makes the kernel
// refuse (EAGAIN) instead of waiting for a disk, so the event loop never blocks on one: the
// caller then goes to the pool. (It lives beside the parity code: both are the RAID layer's.)
static napi_value js_read_cached(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  double pos = 0;
  uint8_t *b;
  size_t len;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || !u8(env, argv[1], &b, &len) ||
      napi_get_value_double(env, argv[2], &pos) != napi_ok || pos < 0) {
    napi_throw_type_error(env, NULL, "readCached(fd, buf, pos) expected");
    return NULL;
  }
  struct iovec iov = {.iov_base = b, .iov_len = len};
  ssize_t n;
  do n = preadv2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  napi_value out;
  napi_create_double(env, n >= 0 ? (double)n : -(double)errno, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"pq", NULL, js_pq, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readCached", NULL, js_read_cached, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
