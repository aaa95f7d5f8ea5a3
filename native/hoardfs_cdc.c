// The FastCDC gear-hash cut search of src/chunks/cdc.ts, in C. The JavaScript loop runs at about
// 460 MB/s on this kind of machine and was the largest single cost of the write path (both
// ingest workers spent a quarter of their time in it); this one is several times faster. The
// semantics are exactly those of Chunker.next (same 32-bit wrapping hash, same masks, same
// limits); test/chunks checks the two against each other on random data.
#include "hoardfs_args.h"
#include <stdint.h>
#include <stddef.h>
#include <string.h>

// cut(data, start, end, final, gear, min, avg, max, maskS, maskL) -> length of the first chunk of
// data[start, end), or 0 when more data is needed. Pure: safe to call from any thread's isolate.
static napi_value js_cut(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 10) {
    napi_throw_type_error(env, NULL, "cut: 10 arguments expected");
    return NULL;
  }
  size_t dlen, glen;
  void *dptr, *gptr;
  if (!typed_arg(env, argv[0], napi_uint8_array, &dptr, &dlen) || !typed_arg(env, argv[4], napi_uint32_array, &gptr, &glen) || glen != 256) {
    napi_throw_type_error(env, NULL, "cut: data must be a Uint8Array and gear a Uint32Array of 256");
    return NULL;
  }
  double v[10];
  for (int k = 1; k < 10; k++) {
    if (k == 3 || k == 4) continue;
    if (napi_get_value_double(env, argv[k], &v[k]) != napi_ok) {
      napi_throw_type_error(env, NULL, "cut: numeric argument expected");
      return NULL;
    }
  }
  bool final = false;
  napi_get_value_bool(env, argv[3], &final);
  size_t start = (size_t)v[1], end = (size_t)v[2];
  size_t min = (size_t)v[5], avg = (size_t)v[6], max = (size_t)v[7];
  uint32_t maskS = (uint32_t)(int64_t)v[8], maskL = (uint32_t)(int64_t)v[9];
  if (end > dlen || start > end) {
    napi_throw_range_error(env, NULL, "cut: range outside data");
    return NULL;
  }
  const uint8_t *data = dptr;
  const uint32_t *gear = gptr;
  size_t n = end - start;
  size_t result;
  if (n <= min) {
    result = final ? n : 0;
  } else {
    size_t limit = start + (n < max ? n : max);
    size_t normal = start + (n < avg ? n : avg);
    size_t i = start + min;
    uint32_t h = 0;
    size_t j = i >= start + 32 ? i - 32 : start;
    for (; j < i; j++) h = (h << 1) + gear[data[j]];
    result = 0;
    for (; i < normal; i++) {
      h = (h << 1) + gear[data[i]];
      if ((h & maskS) == 0) { result = i + 1 - start; goto done; }
    }
    for (; i < limit; i++) {
      h = (h << 1) + gear[data[i]];
      if ((h & maskL) == 0) { result = i + 1 - start; goto done; }
    }
    if (limit - start == max) result = max;
    else result = final ? n : 0;
  }
done:;
  napi_value out;
  napi_create_double(env, (double)result, &out);
  return out;
}

// copy(dst, dstOff, src): memcpy. Buffer#copy into a SharedArrayBuffer goes through V8's relaxed
// (word-at-a-time atomic) copy; assembling each batch for the ingest workers that way took about
// 0.7 s per GiB of the thread that answers the kernel, several times what memcpy takes.
static napi_value js_copy(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  size_t dlen, slen;
  void *dptr, *sptr;
  double at;
  if (argc < 3 || !typed_arg(env, argv[0], napi_uint8_array, &dptr, &dlen) || napi_get_value_double(env, argv[1], &at) != napi_ok ||
      !typed_arg(env, argv[2], napi_uint8_array, &sptr, &slen)) {
    napi_throw_type_error(env, NULL, "copy(dst, dstOff, src): bad arguments");
    return NULL;
  }
  if (at < 0 || at + (double)slen > (double)dlen) {
    napi_throw_range_error(env, NULL, "copy: source does not fit");
    return NULL;
  }
  if (slen) memmove((uint8_t *)dptr + (size_t)at, sptr, slen);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"cut", NULL, js_cut, NULL, NULL, NULL, napi_enumerable, NULL},
    {"copy", NULL, js_copy, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
