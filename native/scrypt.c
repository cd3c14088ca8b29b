/*
 * scrypt's memory-hard core (ROMix, RFC 7914 §5) for the API's KDF, as a Node-API addon.
 *
 * Why Cinderbox has its own: node:crypto's scrypt (OpenSSL) allocates 128·N·r bytes (16 MiB at
 * KDF_COST=14) for every derivation and frees them after. With glibc's defaults those 16 MiB stay
 * in the heap after the first derivation (+32 MiB resident for good); with the API's fixed mmap
 * threshold they go back to the kernel, and every derivation maps and zero-fills them again, which
 * cost the API 5-10 % of its KDF throughput (docs/BENCHMARKS.md). Here each derivation takes a
 * mapping from a small free list, so a busy KDF reuses its mappings; the KDF (app/kdf/kdf.ts) calls
 * release() as soon as it idles, so an idle API holds none.
 *
 * Only ROMix is here. app/crypto/scrypt.ts runs the two PBKDF2-HMAC-SHA256 steps around it with
 * node:crypto, and tests check every output against node:crypto's scrypt and RFC 7914's vector.
 *
 * Secrets: a mapping holds a derivation's whole state (enough to finish it without the passphrase),
 * so it is zeroed with explicit_bzero before it goes back on the list, as OpenSSL cleanses its own;
 * MADV_DONTDUMP keeps it out of core dumps. The job mixes its own copy of the caller's block (so
 * nothing the caller does to its Buffer meanwhile can be written through), wipes it after, and
 * overwrites the stack the mixing used; the caller wipes its Buffer.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Mappings kept for reuse: never more than ran at once (KDF_CONCURRENCY ≤ 1023, libuv's pool). */
#define MAX_KEPT 1024
#define MAX_R 16
#define MAX_LOG2N 20
#define ROTL(a, b) (((a) << (b)) | ((a) >> (32 - (b))))

/* Salsa20/8 core, in place on 16 little-endian words (RFC 7914 §3). */
static void salsa20_8(uint32_t b[16]) {
  uint32_t x[16];
  memcpy(x, b, sizeof x);
  for (int i = 0; i < 8; i += 2) {
    x[4] ^= ROTL(x[0] + x[12], 7);   x[8] ^= ROTL(x[4] + x[0], 9);
    x[12] ^= ROTL(x[8] + x[4], 13);  x[0] ^= ROTL(x[12] + x[8], 18);
    x[9] ^= ROTL(x[5] + x[1], 7);    x[13] ^= ROTL(x[9] + x[5], 9);
    x[1] ^= ROTL(x[13] + x[9], 13);  x[5] ^= ROTL(x[1] + x[13], 18);
    x[14] ^= ROTL(x[10] + x[6], 7);  x[2] ^= ROTL(x[14] + x[10], 9);
    x[6] ^= ROTL(x[2] + x[14], 13);  x[10] ^= ROTL(x[6] + x[2], 18);
    x[3] ^= ROTL(x[15] + x[11], 7);  x[7] ^= ROTL(x[3] + x[15], 9);
    x[11] ^= ROTL(x[7] + x[3], 13);  x[15] ^= ROTL(x[11] + x[7], 18);
    x[1] ^= ROTL(x[0] + x[3], 7);    x[2] ^= ROTL(x[1] + x[0], 9);
    x[3] ^= ROTL(x[2] + x[1], 13);   x[0] ^= ROTL(x[3] + x[2], 18);
    x[6] ^= ROTL(x[5] + x[4], 7);    x[7] ^= ROTL(x[6] + x[5], 9);
    x[4] ^= ROTL(x[7] + x[6], 13);   x[5] ^= ROTL(x[4] + x[7], 18);
    x[11] ^= ROTL(x[10] + x[9], 7);  x[8] ^= ROTL(x[11] + x[10], 9);
    x[9] ^= ROTL(x[8] + x[11], 13);  x[10] ^= ROTL(x[9] + x[8], 18);
    x[12] ^= ROTL(x[15] + x[14], 7); x[13] ^= ROTL(x[12] + x[15], 9);
    x[14] ^= ROTL(x[13] + x[12], 13); x[15] ^= ROTL(x[14] + x[13], 18);
  }
  for (int i = 0; i < 16; i++) b[i] += x[i];
}

/* BlockMix_salsa20/8 (RFC 7914 §4): the 2r blocks of `in` into `out`, even blocks first. */
static void block_mix(const uint32_t *in, uint32_t *out, size_t r) {
  uint32_t x[16];
  memcpy(x, &in[(2 * r - 1) * 16], sizeof x);
  for (size_t i = 0; i < 2 * r; i++) {
    for (int k = 0; k < 16; k++) x[k] ^= in[i * 16 + k];
    salsa20_8(x);
    memcpy(&out[((i & 1) * r + (i >> 1)) * 16], x, sizeof x);
  }
  explicit_bzero(x, sizeof x);
}

/* Overwrites the stack below the caller's frame, where ROMix's frames held state (as libgcrypt's burn_stack). */
static __attribute__((noinline)) void burn_stack(void) {
  uint8_t scratch[4096];
  explicit_bzero(scratch, sizeof scratch);
  __asm__ __volatile__("" : : "r"(scratch) : "memory");
}

static inline void xor_into(uint32_t *dst, const uint32_t *src, size_t words) {
  for (size_t k = 0; k < words; k++) dst[k] ^= src[k];
}

/* ROMix (RFC 7914 §5) of the 128·r bytes at `block`, in place; `v` holds N + 2 blocks of 32·r words. */
static void romix(uint8_t *block, size_t r, uint64_t n, uint32_t *v) {
  const size_t words = 32 * r;
  uint32_t *x = &v[n * words], *y = &v[(n + 1) * words];
  for (size_t k = 0; k < words; k++) {
    const uint8_t *p = &block[4 * k];
    x[k] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  }
  for (uint64_t i = 0; i < n; i += 2) {
    memcpy(&v[i * words], x, words * 4);
    block_mix(x, y, r);
    memcpy(&v[(i + 1) * words], y, words * 4);
    block_mix(y, x, r);
  }
  /* Integerify: the first word of the last 64-byte block; N is a power of two. */
  for (uint64_t i = 0; i < n; i += 2) {
    xor_into(x, &v[(x[(2 * r - 1) * 16] & (n - 1)) * words], words);
    block_mix(x, y, r);
    xor_into(y, &v[(y[(2 * r - 1) * 16] & (n - 1)) * words], words);
    block_mix(y, x, r);
  }
  for (size_t k = 0; k < words; k++) {
    uint8_t *p = &block[4 * k];
    p[0] = (uint8_t)x[k], p[1] = (uint8_t)(x[k] >> 8), p[2] = (uint8_t)(x[k] >> 16), p[3] = (uint8_t)(x[k] >> 24);
  }
}

/* --- mappings: taken by a derivation, wiped and kept after it, unmapped by release() --- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct { void *memory; size_t size; } kept[MAX_KEPT];
static uint32_t kept_count = 0;
static uint32_t in_use = 0;
static double mapped_total = 0;

static void *take_memory(size_t size) {
  void *memory = NULL;
  pthread_mutex_lock(&lock);
  for (uint32_t i = 0; i < kept_count; i++)
    if (kept[i].size == size) {
      memory = kept[i].memory;
      kept[i] = kept[--kept_count];
      break;
    }
  in_use++;
  if (!memory) mapped_total++;
  pthread_mutex_unlock(&lock);
  if (memory) return memory;
  memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    pthread_mutex_lock(&lock);
    in_use--;
    pthread_mutex_unlock(&lock);
    return NULL;
  }
  /* Advice only: transparent huge pages where the host allows them (eight faults, not 4,096). */
#ifdef MADV_HUGEPAGE
  madvise(memory, size, MADV_HUGEPAGE);
#endif
#ifdef MADV_DONTDUMP
  madvise(memory, size, MADV_DONTDUMP);
#endif
  return memory;
}

static void give_back(void *memory, size_t size) {
  explicit_bzero(memory, size);
  pthread_mutex_lock(&lock);
  in_use--;
  if (kept_count < MAX_KEPT) {
    kept[kept_count].memory = memory;
    kept[kept_count].size = size;
    kept_count++;
    memory = NULL;
  }
  pthread_mutex_unlock(&lock);
  if (memory) munmap(memory, size);
}

/* --- the Node-API surface --- */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref block_ref;
  /* Where the caller's block was when the job started; it is written back only if it is still there. */
  void *caller_data;
  size_t r;
  uint64_t n;
  int out_of_memory;
  uint8_t block[128 * MAX_R];
} job_t;

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *job = data;
  const size_t size = (size_t)(job->n + 2) * 128 * job->r;
  uint32_t *memory = take_memory(size);
  if (!memory) {
    job->out_of_memory = 1;
    return;
  }
  romix(job->block, job->r, job->n, memory);
  give_back(memory, size);
  burn_stack();
}

static void free_job(napi_env env, job_t *job) {
  if (job->block_ref) napi_delete_reference(env, job->block_ref);
  if (job->work) napi_delete_async_work(env, job->work);
  explicit_bzero(job->block, sizeof job->block);
  free(job);
}

static void reject(napi_env env, napi_deferred deferred, const char *text) {
  napi_value message, error;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message) == napi_ok &&
      napi_create_error(env, NULL, message, &error) == napi_ok)
    napi_reject_deferred(env, deferred, error);
}

/* The block of a Uint8Array (a Buffer), or NULL when `value` is anything else. */
static uint8_t *uint8_data(napi_env env, napi_value value, size_t *length) {
  bool is_typedarray = false;
  napi_typedarray_type type;
  void *data = NULL;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, value, &type, length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return NULL;
  return data;
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  napi_value block;
  size_t length = 0;
  uint8_t *now = NULL;
  if (napi_get_reference_value(env, job->block_ref, &block) == napi_ok && block) now = uint8_data(env, block, &length);
  if (status != napi_ok) {
    reject(env, job->deferred, "scrypt: cancelled");
  } else if (job->out_of_memory) {
    reject(env, job->deferred, "scrypt: cannot map its memory");
  } else if (now != job->caller_data || length != 128 * job->r) {
    reject(env, job->deferred, "scrypt: the block's memory changed while it was mixed");
  } else {
    napi_value undefined;
    memcpy(now, job->block, length);
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  }
  free_job(env, job);
}

/* A whole number in [low, high] from a JS number, or -1. */
static int64_t whole(napi_env env, napi_value value, int64_t low, int64_t high) {
  double number = 0;
  if (napi_get_value_double(env, value, &number) != napi_ok || number != (double)(int64_t)number) return -1;
  return number < (double)low || number > (double)high ? -1 : (int64_t)number;
}

/*
 * romix(block: Buffer of 128·r bytes, mixed in place, log2N: 1..20, r: 1..16, N < 2^(16·r)):
 * Promise<void>, run on libuv's pool. At most 2 GiB + 4 KiB of memory.
 */
static napi_value js_romix(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  size_t length = 0;
  uint8_t *data = NULL;
  int64_t log2n = -1, r = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 3) {
    data = uint8_data(env, argv[0], &length);
    log2n = whole(env, argv[1], 1, MAX_LOG2N);
    r = whole(env, argv[2], 1, MAX_R);
  }
  /* RFC 7914 §2: N must be less than 2^(128·r/8). */
  if (!data || log2n < 0 || r < 0 || log2n >= 16 * r || length != 128 * (size_t)r) {
    napi_throw_range_error(env, NULL, "romix(block, log2N, r): block must be a Uint8Array of 128·r bytes, log2N 1..20 below 16·r, r 1..16");
    return NULL;
  }
  job_t *job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, NULL, "scrypt: out of memory");
    return NULL;
  }
  job->caller_data = data;
  job->r = (size_t)r;
  job->n = (uint64_t)1 << log2n;
  memcpy(job->block, data, length);
  napi_value promise, name;
  if (napi_create_reference(env, argv[0], 1, &job->block_ref) != napi_ok ||
      napi_create_string_utf8(env, "cinderbox:scrypt", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, job, &job->work) != napi_ok ||
      napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    free_job(env, job);
    napi_throw_error(env, NULL, "scrypt: cannot start");
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    reject(env, job->deferred, "scrypt: cannot start");
    free_job(env, job);
  }
  return promise;
}

/* release(): unmaps every kept mapping (those in use stay with their derivation); returns how many. */
static napi_value js_release(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&lock);
  uint32_t released = kept_count;
  for (uint32_t i = 0; i < kept_count; i++) munmap(kept[i].memory, kept[i].size);
  kept_count = 0;
  pthread_mutex_unlock(&lock);
  napi_value out;
  napi_create_uint32(env, released, &out);
  return out;
}

/* stats(): { kept, inUse, mapped } — mappings on the free list, held by running derivations, made so far. */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&lock);
  uint32_t k = kept_count, u = in_use;
  double m = mapped_total;
  pthread_mutex_unlock(&lock);
  napi_value out, value;
  napi_create_object(env, &out);
  napi_create_uint32(env, k, &value);
  napi_set_named_property(env, out, "kept", value);
  napi_create_uint32(env, u, &value);
  napi_set_named_property(env, out, "inUse", value);
  napi_create_double(env, m, &value);
  napi_set_named_property(env, out, "mapped", value);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "romix", NAPI_AUTO_LENGTH, js_romix, NULL, &fn);
  napi_set_named_property(env, exports, "romix", fn);
  napi_create_function(env, "release", NAPI_AUTO_LENGTH, js_release, NULL, &fn);
  napi_set_named_property(env, exports, "release", fn);
  napi_create_function(env, "stats", NAPI_AUTO_LENGTH, js_stats, NULL, &fn);
  napi_set_named_property(env, exports, "stats", fn);
  return exports;
}
