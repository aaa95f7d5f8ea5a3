// Chunk ids and envelopes (src/crypto/envelope.ts) for many chunks per call, with the OpenSSL
// that node itself links (its symbols are exported to addons). The algorithms and the bytes are
// exactly those of the JavaScript path; what this saves is the per-chunk cost around them:
// node:crypto builds a new cipher and two HMAC objects per chunk and concatenates the envelope,
// which held sealing at about half of AES-GCM's speed here. One context per call is reused for
// every chunk instead. test/crypto checks both paths against each other.
//
//   envelope = nonce(12) || AES-256-GCM(key, nonce, aad = id, le32(len) || data || zeros) || tag(16)
//   key      = HMAC-SHA256(sealKey, id),  id = HMAC-SHA256(idKey, data)
//   the zeros pad le32(len) || data to Padmé(len + 4).
#define OPENSSL_SUPPRESS_DEPRECATED
#include "hoardfs_args.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <string.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define ID_LEN 32
#define LEN_FIELD 4

static const uint8_t ZEROS[64 * 1024];

// Padmé as in envelope.ts: keep the top floor(log2(e)) + 1 bits of the length, e = floor(log2 L).
static uint64_t padme(uint64_t len) {
  if (len < 2) return len;
  int e = 63 - __builtin_clzll(len);
  int s = (31 - __builtin_clz((unsigned)e)) + 1;
  uint64_t unit = (uint64_t)1 << (e - s);
  return (len + unit - 1) / unit * unit;
}

static int bytes_arg(napi_env env, napi_value v, uint8_t **p, size_t *n) {
  return typed_arg(env, v, napi_uint8_array, (void **)p, n);
}

static int f64_arg(napi_env env, napi_value v, double **p, size_t *n) {
  return typed_arg(env, v, napi_float64_array, (void **)p, n);
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

// A keyed HMAC-SHA256 whose pads are computed once; each message resets to the keyed state.
static HMAC_CTX *keyed_hmac(const uint8_t *key, size_t keylen) {
  HMAC_CTX *h = HMAC_CTX_new();
  if (h && !HMAC_Init_ex(h, key, (int)keylen, EVP_sha256(), NULL)) {
    HMAC_CTX_free(h);
    return NULL;
  }
  return h;
}

static int hmac(HMAC_CTX *h, const uint8_t *msg, size_t n, uint8_t out[32]) {
  unsigned int l = 32;
  return HMAC_Init_ex(h, NULL, 0, NULL, NULL) && HMAC_Update(h, msg, n) && HMAC_Final(h, out, &l) && l == 32;
}

// ids(data, offs: Float64Array, lens: Float64Array, idKey, out) -- 32 bytes per chunk into out.
static napi_value js_ids(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *data, *key, *out;
  double *offs, *lens;
  size_t dn, kn, on, n, n2;
  if (argc < 5 || !bytes_arg(env, argv[0], &data, &dn) || !f64_arg(env, argv[1], &offs, &n) ||
      !f64_arg(env, argv[2], &lens, &n2) || !bytes_arg(env, argv[3], &key, &kn) || !bytes_arg(env, argv[4], &out, &on))
    return fail(env, "ids(data, offs, lens, key, out): bad arguments");
  if (n != n2 || on < 32 * n) return fail(env, "ids: offs, lens and out disagree");
  for (size_t i = 0; i < n; i++)
    if (offs[i] < 0 || lens[i] < 0 || offs[i] + lens[i] > (double)dn) return fail(env, "ids: chunk outside data");
  HMAC_CTX *h = keyed_hmac(key, kn);
  int ok = h != NULL;
  for (size_t i = 0; ok && i < n; i++) ok = hmac(h, data + (size_t)offs[i], (size_t)lens[i], out + 32 * i);
  HMAC_CTX_free(h);
  if (!ok) return fail(env, "ids: HMAC failed");
  return NULL;
}

// seal(data, offs, lens, ids, sealKey, out) -- envelopes back to back into out, which must be
// exactly the sum of their sizes (the caller computes them with sealedSize).
static napi_value js_seal(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *data, *ids, *key, *out;
  double *offs, *lens;
  size_t dn, in, kn, on, n, n2;
  if (argc < 6 || !bytes_arg(env, argv[0], &data, &dn) || !f64_arg(env, argv[1], &offs, &n) || !f64_arg(env, argv[2], &lens, &n2) ||
      !bytes_arg(env, argv[3], &ids, &in) || !bytes_arg(env, argv[4], &key, &kn) || !bytes_arg(env, argv[5], &out, &on))
    return fail(env, "seal(data, offs, lens, ids, key, out): bad arguments");
  if (n != n2 || in < ID_LEN * n) return fail(env, "seal: offs, lens and ids disagree");
  size_t need = 0;
  for (size_t i = 0; i < n; i++) {
    if (offs[i] < 0 || lens[i] < 0 || lens[i] > 0x70000000 || offs[i] + lens[i] > (double)dn) return fail(env, "seal: chunk outside data");
    need += NONCE_LEN + padme((uint64_t)lens[i] + LEN_FIELD) + TAG_LEN;
  }
  if (need != on) return fail(env, "seal: out is not the size of the envelopes");

  HMAC_CTX *h = keyed_hmac(key, kn);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int ok = h && c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) &&
           EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL);
  uint8_t ck[32];
  uint8_t *o = out;
  for (size_t i = 0; ok && i < n; i++) {
    const uint8_t *id = ids + ID_LEN * i;
    size_t len = (size_t)lens[i];
    size_t padded = padme(len + LEN_FIELD);
    uint8_t lf[LEN_FIELD] = {len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, (len >> 24) & 0xff};
    int l;
    ok = RAND_bytes(o, NONCE_LEN) == 1 && hmac(h, id, ID_LEN, ck) && EVP_EncryptInit_ex(c, NULL, NULL, ck, o) &&
         EVP_EncryptUpdate(c, NULL, &l, id, ID_LEN);
    uint8_t *ct = o + NONCE_LEN;
    ok = ok && EVP_EncryptUpdate(c, ct, &l, lf, LEN_FIELD) && EVP_EncryptUpdate(c, ct + LEN_FIELD, &l, data + (size_t)offs[i], (int)len);
    for (size_t z = LEN_FIELD + len; ok && z < padded;) {
      size_t k = padded - z < sizeof ZEROS ? padded - z : sizeof ZEROS;
      ok = EVP_EncryptUpdate(c, ct + z, &l, ZEROS, (int)k);
      z += k;
    }
    ok = ok && EVP_EncryptFinal_ex(c, ct + padded, &l) && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + padded);
    o = ct + padded + TAG_LEN;
  }
  OPENSSL_cleanse(ck, sizeof ck);
  EVP_CIPHER_CTX_free(c);
  HMAC_CTX_free(h);
  if (!ok) {
    OPENSSL_cleanse(out, on);
    return fail(env, "seal: OpenSSL failed");
  }
  return NULL;
}

// open(id, envelope, sealKey, out) -> plaintext length; -1 when the envelope does not
// authenticate, -2 when its length field and size disagree, -3 when its padding is not zero.
// out receives le32(len) || data || zeros (the envelope minus 28 bytes).
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *id, *e, *key, *out;
  size_t idn, en, kn, on;
  if (argc < 4 || !bytes_arg(env, argv[0], &id, &idn) || !bytes_arg(env, argv[1], &e, &en) || !bytes_arg(env, argv[2], &key, &kn) ||
      !bytes_arg(env, argv[3], &out, &on) || idn != ID_LEN)
    return fail(env, "open(id, envelope, key, out): bad arguments");
  double result = -1;
  if (en >= NONCE_LEN + LEN_FIELD + TAG_LEN && on == en - NONCE_LEN - TAG_LEN && on <= 0x7fffffff) {
    HMAC_CTX *h = keyed_hmac(key, kn);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t ck[32];
    int l;
    int ok = h && c && hmac(h, id, ID_LEN, ck) && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) && EVP_DecryptInit_ex(c, NULL, NULL, ck, e) &&
             EVP_DecryptUpdate(c, NULL, &l, id, ID_LEN) && EVP_DecryptUpdate(c, out, &l, e + NONCE_LEN, (int)on) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, e + en - TAG_LEN) && EVP_DecryptFinal_ex(c, out + on, &l) > 0;
    OPENSSL_cleanse(ck, sizeof ck);
    EVP_CIPHER_CTX_free(c);
    HMAC_CTX_free(h);
    if (ok) {
      uint64_t len = (uint64_t)out[0] | (uint64_t)out[1] << 8 | (uint64_t)out[2] << 16 | (uint64_t)out[3] << 24;
      // The tag makes these unreachable without the seal key; they guard against sealer bugs.
      if (len > on - LEN_FIELD || padme(len + LEN_FIELD) != on) result = -2;
      for (size_t z = LEN_FIELD + len; result == -1 && z < on; z++)
        if (out[z] != 0) result = -3;
      if (result == -1) result = (double)len;
    }
    if (result < 0) OPENSSL_cleanse(out, on);
  }
  napi_value r;
  napi_create_double(env, result, &r);
  return r;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"ids", NULL, js_ids, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seal", NULL, js_seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, 3, props);
  return exports;
}
