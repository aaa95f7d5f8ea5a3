// Argument checks shared by the addons: a typed array of the expected element type, as a pointer
// and an element count, or 0 when the value is anything else.
#ifndef HOARDFS_ARGS_H
#define HOARDFS_ARGS_H
#include <node_api.h>

static inline int typed_arg(napi_env env, napi_value v, napi_typedarray_type want, void **ptr, size_t *len) {
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  return napi_get_typedarray_info(env, v, &t, len, ptr, &ab, &off) == napi_ok && t == want;
}

#endif
