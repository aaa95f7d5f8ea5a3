/*
 * hoardfs_fuse: a thin N-API binding over libfuse3's low-level API.
 *
 * Threading model
 *   - By default (MF_MAIN_LOOP) the JS thread reads /dev/fuse itself: the fd is non-blocking and
 *     watched by a uv_poll on Node's loop; each wake-up reads and dispatches every queued request
 *     (up to a batch) inside one callback scope, so promise continuations (the replies) run
 *     right after. A request then costs one thread wake-up instead of two (kernel -> FUSE thread
 *     -> JS thread): a filesystem that answers every lookup ENOENT at once went from 14,300 to
 *     16,900 lookups per second.
 *     JS never blocks on the fd, so a slow asynchronous operation still delays only itself.
 *   - Otherwise libfuse's multi-threaded session loop runs on its own pthread. Worker threads
 *     decode a request into a heap `hreq`, queue it on a napi_threadsafe_function (non-blocking)
 *     and go straight back to reading /dev/fuse.
 *   - JavaScript answers later by calling reply*(req, ...) on the JS thread; fuse_reply_* is
 *     thread-safe, so the reply goes to the kernel directly from there.
 *   - Numeric arguments travel through two shared scratch ArrayBuffers (one for requests, one
 *     for replies) instead of napi_create_* / napi_get_named_property per field: the hot path
 *     (getattr, read, write) then costs one JS call and one native call per request.
 *
 * Lifetime
 *   - A fuse_req_t stays valid until it is replied to, and replying needs the session. When the
 *     loop ends (external umount or our own), the session is therefore destroyed only once every
 *     request handed to JS has been answered (`outstanding` reaches zero); late replies just fail
 *     with EBADF inside libfuse, which is harmless.
 */
#define FUSE_USE_VERSION 35
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

/* Op codes shared with src/fuse/native.ts. */
enum {
  OP_LOOKUP = 1, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK,
  OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH, OP_RELEASE,
  OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS, OP_SETXATTR,
  OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_ACCESS, OP_CREATE, OP_FALLOCATE,
  OP_FORGET_MULTI, /* only inside C: fanned out to OP_FORGET calls */
  OP_EXIT = 100,   /* the session loop has ended */
};

/* Request argument slots (8 bytes each, f64 unless marked i64); mirrored in native.ts. */
enum {
  A_INO, A_FH, A_HASFH, A_OFF, A_SIZE, A_FLAGS, A_MODE, A_X, A_INO2, A_UID, A_GID, A_PID,
  A_UMASK, A_TOSET, A_SMODE, A_SUID, A_SGID, A_SSIZE, A_ATIME /*i64*/, A_MTIME /*i64*/,
  A_CTIME /*i64*/, A_NSLOTS
};

/* Reply slots; mirrored in native.ts. statfs reuses 0..7. */
enum {
  R_INO, R_MODE, R_NLINK, R_UID, R_GID, R_RDEV, R_SIZE, R_BLOCKS, R_BLKSIZE, R_ATIME /*i64*/,
  R_MTIME /*i64*/, R_CTIME /*i64*/, R_GEN, R_ETO, R_ATO, R_FH, R_OFLAGS, R_NSLOTS
};

#define MF_WRITEBACK 1
#define MF_NO_SECURITY_CAPABILITY 2
#define MF_POSIX_ACL 4
#define MF_MAIN_LOOP 8
/* With MF_MAIN_LOOP: a write's payload reaches JS as a view of the receive buffer, valid only
 * during the dispatch call (the next request overwrites it), instead of a malloc'd copy handed
 * over as an external Buffer. The filesystem copies what it keeps; what it saves is a copy and,
 * more, the 1 MiB of external memory per write that kept pushing V8 into full GCs. */
#define MF_BORROW_WRITES 16
/* Largest request: FUSE_MAX_MAX_PAGES (256) pages of payload plus headers. */
#define RBUF_SIZE ((1u << 20) + (64u << 10))

typedef union {
  double d;
  int64_t i;
} slot_t;

typedef struct inst {
  slot_t *args;  /* request scratch, R/W from JS as Float64Array + BigInt64Array */
  slot_t *reply; /* reply scratch */
  napi_ref args_ref, reply_ref;
} inst_t;

typedef struct hmount {
  struct fuse_session *se;
  inst_t *inst;
  napi_threadsafe_function tsfn;
  pthread_t thread;
  int thread_started;
  int flags;
  atomic_int outstanding; /* requests handed to JS and not yet replied */
  int closed;             /* JS called close(): destroy the session when outstanding == 0 */
  int se_destroyed;
  int tsfn_released;
  /* MF_MAIN_LOOP: the poll on /dev/fuse, its receive buffer, and the dispatch function while a
   * batch is being dispatched (NULL otherwise: requests then go through the tsfn). */
  uv_poll_t *poll;
  char *rbuf;
  napi_ref rbuf_ref; /* MF_BORROW_WRITES: an ArrayBuffer over rbuf, which then owns it */
  napi_env env;
  napi_ref dispatch_ref;
  napi_async_context actx;
  napi_value cur_cb;
  /* What the kernel negotiated, for diagnostics. Written once by init. */
  unsigned max_write, max_readahead, capable, want, proto_minor;
} hmount_t;

typedef struct hreq {
  int op;
  fuse_req_t req;
  slot_t a[A_NSLOTS];
  const char *s1; size_t s1len; /* name, link target, xattr name */
  const char *s2; size_t s2len; /* new name, link name, xattr value */
  char *data; size_t datalen;   /* write payload; ownership passes to an external Buffer */
  size_t borrowed_off; int borrowed; /* MF_BORROW_WRITES: the payload is rbuf[off, off + len) */
  size_t nforgets;
  struct fuse_forget_data *forgets;
  char tail[];
} hreq_t;

/* ---------- FUSE worker side ---------- */

static hreq_t *hreq_new(int op, fuse_req_t req, const char *s1, size_t s1len, const char *s2,
                        size_t s2len, size_t extra) {
  hreq_t *r = malloc(sizeof(hreq_t) + s1len + s2len + extra);
  if (!r) return NULL;
  r->op = op;
  r->req = req;
  memset(r->a, 0, sizeof r->a);
  r->s1 = r->s2 = NULL;
  r->s1len = s1len;
  r->s2len = s2len;
  r->data = NULL;
  r->datalen = 0;
  r->borrowed = 0;
  r->borrowed_off = 0;
  r->nforgets = 0;
  r->forgets = NULL;
  if (s1) { memcpy(r->tail, s1, s1len); r->s1 = r->tail; }
  if (s2) { memcpy(r->tail + s1len, s2, s2len); r->s2 = r->tail + s1len; }
  if (req && op != OP_FORGET && op != OP_FORGET_MULTI) {
    const struct fuse_ctx *c = fuse_req_ctx(req);
    r->a[A_UID].d = c->uid;
    r->a[A_GID].d = c->gid;
    r->a[A_PID].d = c->pid;
    r->a[A_UMASK].d = c->umask;
  }
  return r;
}

static void hreq_free(hreq_t *r) {
  free(r->data);
  free(r);
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data);

static void send_req(hmount_t *m, hreq_t *r) {
  int replyable = r->req != NULL;
  if (replyable) atomic_fetch_add(&m->outstanding, 1);
  if (m->cur_cb) {
    call_js(m->env, m->cur_cb, m, r);
    return;
  }
  if (napi_call_threadsafe_function(m->tsfn, r, napi_tsfn_nonblocking) != napi_ok) {
    /* Only while shutting down; answer so the kernel does not wait forever. */
    if (replyable) {
      atomic_fetch_sub(&m->outstanding, 1);
      fuse_reply_err(r->req, EIO);
    }
    hreq_free(r);
  }
}

#define M(req) ((hmount_t *)fuse_req_userdata(req))
#define NEW_OR_FAIL(r, expr)                                                       \
  hreq_t *r = (expr);                                                              \
  if (!r) { fuse_reply_err(req, ENOMEM); return; }
#define SET_FI(r, fi)                                                              \
  do {                                                                             \
    if (fi) {                                                                      \
      (r)->a[A_FH].d = (double)(fi)->fh;                                           \
      (r)->a[A_HASFH].d = 1;                                                       \
      (r)->a[A_FLAGS].d = (fi)->flags;                                             \
    } else {                                                                       \
      (r)->a[A_FH].d = 0;                                                          \
      (r)->a[A_HASFH].d = 0;                                                       \
    }                                                                              \
  } while (0)

static void ll_init(void *ud, struct fuse_conn_info *conn) {
  hmount_t *m = ud;
  /* The kernel must strip suid/sgid itself (via setattr): FsOps has no notion of it. */
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  /* POSIX ACLs: the kernel enforces them and hands us umask, so that a default ACL can
   * replace it; the filesystem keeps the ACL and the mode bits in step. */
  if ((m->flags & MF_POSIX_ACL) && (conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK))
    conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
  if ((m->flags & MF_WRITEBACK) && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  /* libfuse 3.14 sizes its receive buffer for 256 pages, so 1 MiB is the ceiling; it also
   * sends FUSE_MAX_PAGES to the kernel so the kernel actually uses it. */
  conn->max_write = 1u << 20;
  /* The kernel uses min(this, bdi read_ahead_kb), and the bdi starts at 128 KiB: the adapter
   * raises it through sysfs after mounting (MountOptions.readAheadKb). */
  conn->max_readahead = 1u << 20;
  /* More in-flight async reads / writeback pages than the default 12. */
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1;
  m->max_write = conn->max_write;
  m->max_readahead = conn->max_readahead;
  m->capable = conn->capable;
  m->want = conn->want;
  m->proto_minor = conn->proto_minor;
}

/* FsOps.destroy is awaited by the adapter after the loop ends; nothing to do here. */
static void ll_destroy(void *ud) { (void)ud; }

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW_OR_FAIL(r, hreq_new(OP_LOOKUP, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)parent;
  send_req(M(req), r);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  hmount_t *m = M(req);
  fuse_reply_none(req); /* no answer goes to the kernel, so do not make it wait for JS */
  hreq_t *r = hreq_new(OP_FORGET, NULL, NULL, 0, NULL, 0, 0);
  if (!r) return;
  r->a[A_INO].d = (double)ino;
  r->a[A_X].d = (double)nlookup;
  send_req(m, r);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  hmount_t *m = M(req);
  size_t bytes = count * sizeof(*forgets);
  hreq_t *r = hreq_new(OP_FORGET_MULTI, NULL, NULL, 0, NULL, 0, bytes);
  if (r) {
    memcpy(r->tail, forgets, bytes); /* forgets lives in the worker's receive buffer */
    r->forgets = (struct fuse_forget_data *)r->tail;
    r->nforgets = count;
  }
  fuse_reply_none(req);
  if (r) send_req(m, r);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_GETATTR, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  send_req(M(req), r);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st, int to_set,
                       struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_SETATTR, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  r->a[A_TOSET].d = to_set;
  r->a[A_SMODE].d = st->st_mode;
  r->a[A_SUID].d = st->st_uid;
  r->a[A_SGID].d = st->st_gid;
  r->a[A_SSIZE].d = (double)st->st_size;
  r->a[A_ATIME].i = (int64_t)st->st_atim.tv_sec * 1000000000LL + st->st_atim.tv_nsec;
  r->a[A_MTIME].i = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
  r->a[A_CTIME].i = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
  send_req(M(req), r);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  NEW_OR_FAIL(r, hreq_new(OP_READLINK, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  send_req(M(req), r);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev) {
  NEW_OR_FAIL(r, hreq_new(OP_MKNOD, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)parent;
  r->a[A_MODE].d = mode;
  r->a[A_X].d = (double)rdev;
  send_req(M(req), r);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  NEW_OR_FAIL(r, hreq_new(OP_MKDIR, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)parent;
  r->a[A_MODE].d = mode;
  send_req(M(req), r);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW_OR_FAIL(r, hreq_new(OP_UNLINK, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)parent;
  send_req(M(req), r);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW_OR_FAIL(r, hreq_new(OP_RMDIR, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)parent;
  send_req(M(req), r);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  /* s1 = new entry name, s2 = target */
  NEW_OR_FAIL(r, hreq_new(OP_SYMLINK, req, name, strlen(name), link, strlen(link), 0));
  r->a[A_INO].d = (double)parent;
  send_req(M(req), r);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  NEW_OR_FAIL(r, hreq_new(OP_RENAME, req, name, strlen(name), newname, strlen(newname), 0));
  r->a[A_INO].d = (double)parent;
  r->a[A_INO2].d = (double)newparent;
  r->a[A_FLAGS].d = flags;
  send_req(M(req), r);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  NEW_OR_FAIL(r, hreq_new(OP_LINK, req, newname, strlen(newname), NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  r->a[A_INO2].d = (double)newparent;
  send_req(M(req), r);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_OPEN, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  r->a[A_FLAGS].d = fi->flags;
  send_req(M(req), r);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_READ, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  r->a[A_SIZE].d = (double)size;
  r->a[A_OFF].d = (double)off;
  send_req(M(req), r);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_WRITE, req, NULL, 0, NULL, 0, 0));
  hmount_t *m = M(req);
  if (m->rbuf_ref && m->cur_cb && buf >= m->rbuf && buf + size <= m->rbuf + RBUF_SIZE) {
    /* Dispatched right now on this thread, before rbuf is read into again. */
    r->borrowed = 1;
    r->borrowed_off = (size_t)(buf - m->rbuf);
  } else {
    /* `buf` points into this worker's receive buffer, which is reused for the next request:
     * copy once here, off the JS thread, and hand the copy to JS as an external Buffer. */
    r->data = malloc(size ? size : 1);
    if (!r->data) { free(r); fuse_reply_err(req, ENOMEM); return; }
    memcpy(r->data, buf, size);
  }
  r->datalen = size;
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  r->a[A_OFF].d = (double)off;
  r->a[A_SIZE].d = (double)size;
  r->a[A_X].d = fi->writepage;
  send_req(M(req), r);
}

#define FH_OP(fn, OPC)                                                             \
  static void fn(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {      \
    NEW_OR_FAIL(r, hreq_new(OPC, req, NULL, 0, NULL, 0, 0));                       \
    r->a[A_INO].d = (double)ino;                                                   \
    SET_FI(r, fi);                                                                 \
    send_req(M(req), r);                                                           \
  }
FH_OP(ll_flush, OP_FLUSH)
FH_OP(ll_release, OP_RELEASE)
FH_OP(ll_releasedir, OP_RELEASEDIR)

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_FSYNC, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  r->a[A_X].d = datasync;
  send_req(M(req), r);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                        struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_FSYNCDIR, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  r->a[A_X].d = datasync;
  send_req(M(req), r);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_OPENDIR, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  r->a[A_FLAGS].d = fi->flags;
  send_req(M(req), r);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_READDIR, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  r->a[A_SIZE].d = (double)size;
  r->a[A_OFF].d = (double)off;
  send_req(M(req), r);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  NEW_OR_FAIL(r, hreq_new(OP_STATFS, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  send_req(M(req), r);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags) {
  /* From the first file capability on, getxattr("security.capability") must ask the filesystem. */
  if (strcmp(name, "security.capability") == 0)
    __atomic_and_fetch(&M(req)->flags, ~MF_NO_SECURITY_CAPABILITY, __ATOMIC_SEQ_CST);
  NEW_OR_FAIL(r, hreq_new(OP_SETXATTR, req, name, strlen(name), value, size, 0));
  r->a[A_INO].d = (double)ino;
  r->a[A_FLAGS].d = flags;
  send_req(M(req), r);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  hmount_t *m = M(req);
  /* The kernel asks for this before every write (file_remove_privs); skip the JS round trip. */
  if ((__atomic_load_n(&m->flags, __ATOMIC_SEQ_CST) & MF_NO_SECURITY_CAPABILITY) && strcmp(name, "security.capability") == 0) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  NEW_OR_FAIL(r, hreq_new(OP_GETXATTR, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  r->a[A_SIZE].d = (double)size;
  send_req(m, r);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  NEW_OR_FAIL(r, hreq_new(OP_LISTXATTR, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  r->a[A_SIZE].d = (double)size;
  send_req(M(req), r);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  NEW_OR_FAIL(r, hreq_new(OP_REMOVEXATTR, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  send_req(M(req), r);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  NEW_OR_FAIL(r, hreq_new(OP_ACCESS, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  r->a[A_X].d = mask;
  send_req(M(req), r);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_CREATE, req, name, strlen(name), NULL, 0, 0));
  r->a[A_INO].d = (double)parent;
  r->a[A_MODE].d = mode;
  r->a[A_FLAGS].d = fi->flags;
  send_req(M(req), r);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
  NEW_OR_FAIL(r, hreq_new(OP_FALLOCATE, req, NULL, 0, NULL, 0, 0));
  r->a[A_INO].d = (double)ino;
  SET_FI(r, fi);
  r->a[A_MODE].d = mode;
  r->a[A_OFF].d = (double)offset;
  r->a[A_SIZE].d = (double)length;
  send_req(M(req), r);
}

static const struct fuse_lowlevel_ops ll_ops = {
  .init = ll_init,
  .destroy = ll_destroy,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .forget_multi = ll_forget_multi,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mknod = ll_mknod,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_rmdir,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .link = ll_link,
  .open = ll_open,
  .read = ll_read,
  .write = ll_write,
  .flush = ll_flush,
  .release = ll_release,
  .fsync = ll_fsync,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .releasedir = ll_releasedir,
  .fsyncdir = ll_fsyncdir,
  .statfs = ll_statfs,
  .setxattr = ll_setxattr,
  .getxattr = ll_getxattr,
  .listxattr = ll_listxattr,
  .removexattr = ll_removexattr,
  .access = ll_access,
  .create = ll_create,
  .fallocate = ll_fallocate,
  /* ioctl, poll, getlk/setlk, flock, bmap, lseek, copy_file_range, readdirplus: left NULL so
   * libfuse answers ENOSYS and the kernel falls back (local locks, generic lseek, ...). */
};

static void *loop_thread(void *arg) {
  hmount_t *m = arg;
  struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 10};
  fuse_session_loop_mt(m->se, &cfg);
  /* Every worker has been joined by now, so OP_EXIT is the last item JS will see. */
  hreq_t *r = hreq_new(OP_EXIT, NULL, NULL, 0, NULL, 0, 0);
  if (r) send_req(m, r);
  return NULL;
}

/* MF_MAIN_LOOP: /dev/fuse is readable. Read and dispatch what is queued, then let the loop
 * run the replies and other work; level-triggered polling brings us back for the rest. */
static void on_fuse_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  hmount_t *m = h->data;
  napi_env env = m->env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value resource, cb;
  int ended = status < 0;
  if (napi_open_handle_scope(env, &hs) != napi_ok) return;
  napi_create_object(env, &resource);
  napi_get_reference_value(env, m->dispatch_ref, &cb);
  napi_open_callback_scope(env, resource, m->actx, &cs);
  m->cur_cb = cb;
  int fd = fuse_session_fd(m->se);
  for (int n = 0; !ended && n < 64; n++) {
    ssize_t res = read(fd, m->rbuf, RBUF_SIZE);
    if (res < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR || errno == ENOENT) continue; /* ENOENT: the request was interrupted */
      if (errno != ENODEV) perror("hoardfs: reading /dev/fuse");
      ended = 1;
      break;
    }
    if (res == 0) { ended = 1; break; }
    struct fuse_buf fb = {.size = (size_t)res, .flags = 0, .mem = m->rbuf, .fd = -1, .pos = 0};
    fuse_session_process_buf(m->se, &fb);
    if (fuse_session_exited(m->se)) ended = 1;
  }
  m->cur_cb = NULL;
  if (ended) {
    uv_poll_stop(m->poll);
    /* Through the tsfn, so that JS's close() never runs inside this callback. */
    hreq_t *r = hreq_new(OP_EXIT, NULL, NULL, 0, NULL, 0, 0);
    if (r) send_req(m, r);
  }
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

static void free_poll(uv_handle_t *h) { free(h); }

static void free_rbuf(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  free(data);
}

/* rbuf goes with its ArrayBuffer when there is one (freed by GC), else now. */
static void release_rbuf(napi_env env, hmount_t *m) {
  if (m->rbuf_ref) {
    napi_delete_reference(env, m->rbuf_ref);
    m->rbuf_ref = NULL;
  } else {
    free(m->rbuf);
  }
  m->rbuf = NULL;
}

/* ---------- JS thread side ---------- */

#define CHECK(call)                                                                \
  do {                                                                             \
    if ((call) != napi_ok) return throw_last(env, #call);                          \
  } while (0)

static napi_value throw_last(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s failed: %s", what,
             info && info->error_message ? info->error_message : "unknown");
    napi_throw_error(env, NULL, msg);
  }
  return NULL;
}

static void maybe_destroy(hmount_t *m) {
  if (m->closed && !m->se_destroyed && atomic_load(&m->outstanding) == 0) {
    m->se_destroyed = 1;
    fuse_session_destroy(m->se);
    m->se = NULL;
    /* hmount itself is freed by the tsfn finalizer, which runs after the queue drained. */
  }
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  hmount_t *m = data;
  /* Only reached after close() released the tsfn; if requests are still outstanding the
   * session (and m) must outlive them, so hand ownership to the last reply. */
  m->tsfn_released = 2;
  if (m->se_destroyed) free(m);
}

static void release_m_if_done(hmount_t *m) {
  if (m->se_destroyed && m->tsfn_released == 2) free(m);
}

static void free_external(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  free(data);
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  hmount_t *m = context;
  hreq_t *r = data;
  if (env == NULL) {
    /* The tsfn is being torn down with items still queued (cannot happen after OP_EXIT, but be
     * safe): nobody will answer these. */
    if (r->req) {
      fuse_reply_err(r->req, EIO);
      atomic_fetch_sub(&m->outstanding, 1);
    }
    hreq_free(r);
    return;
  }
  slot_t *A = m->inst->args;
  napi_value argv[4], undef, global;
  napi_get_undefined(env, &undef);
  napi_get_global(env, &global);
  argv[2] = argv[3] = undef;

  if (r->op == OP_FORGET_MULTI) {
    napi_create_int32(env, OP_FORGET, &argv[0]);
    napi_create_double(env, 0, &argv[1]);
    for (size_t i = 0; i < r->nforgets; i++) {
      A[A_INO].d = (double)r->forgets[i].ino;
      A[A_X].d = (double)r->forgets[i].nlookup;
      napi_call_function(env, global, js_cb, 2, argv, NULL);
    }
    hreq_free(r);
    return;
  }

  memcpy(A, r->a, sizeof r->a);
  napi_create_int32(env, r->op, &argv[0]);
  /* A user-space pointer is < 2^53 on every 64-bit Linux ABI, so a double holds it exactly. */
  napi_create_double(env, (double)(uintptr_t)r->req, &argv[1]);
  int argc = 2;
  switch (r->op) {
    case OP_SETXATTR:
      napi_create_string_utf8(env, r->s1, r->s1len, &argv[2]);
      napi_create_buffer_copy(env, r->s2len, r->s2, NULL, &argv[3]);
      argc = 4;
      break;
    case OP_GETXATTR:
    case OP_REMOVEXATTR:
      napi_create_string_utf8(env, r->s1, r->s1len, &argv[2]);
      argc = 3;
      break;
    case OP_WRITE:
      if (r->borrowed) {
        napi_value ab;
        napi_get_reference_value(env, m->rbuf_ref, &ab);
        napi_create_typedarray(env, napi_uint8_array, r->datalen, ab, r->borrowed_off, &argv[2]);
      } else if (napi_create_external_buffer(env, r->datalen, r->data, free_external, NULL, &argv[2]) ==
          napi_ok) {
        r->data = NULL; /* owned by the Buffer now */
      } else {
        napi_create_buffer_copy(env, r->datalen, r->data, NULL, &argv[2]);
      }
      argc = 3;
      break;
    default:
      if (r->s1) {
        napi_create_buffer_copy(env, r->s1len, r->s1, NULL, &argv[2]);
        argc = 3;
      }
      if (r->s2) {
        napi_create_buffer_copy(env, r->s2len, r->s2, NULL, &argv[3]);
        argc = 4;
      }
  }
  hreq_free(r);
  if (napi_call_function(env, global, js_cb, argc, argv, NULL) != napi_ok) {
    /* The adapter never throws; if it did, surface it rather than swallow it. */
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
}

static void fill_attr(struct stat *st, const slot_t *R) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)R[R_INO].d;
  st->st_mode = (mode_t)R[R_MODE].d;
  st->st_nlink = (nlink_t)R[R_NLINK].d;
  st->st_uid = (uid_t)R[R_UID].d;
  st->st_gid = (gid_t)R[R_GID].d;
  st->st_rdev = (dev_t)R[R_RDEV].d;
  st->st_size = (off_t)R[R_SIZE].d;
  st->st_blocks = (blkcnt_t)R[R_BLOCKS].d;
  st->st_blksize = (blksize_t)R[R_BLKSIZE].d;
  struct timespec *ts[3] = {&st->st_atim, &st->st_mtim, &st->st_ctim};
  for (int i = 0; i < 3; i++) {
    int64_t ns = R[R_ATIME + i].i;
    int64_t sec = ns / 1000000000LL, nsec = ns % 1000000000LL;
    if (nsec < 0) { nsec += 1000000000LL; sec -= 1; } /* floor for pre-1970 times */
    ts[i]->tv_sec = sec;
    ts[i]->tv_nsec = nsec;
  }
}

/* Common prologue of reply functions: argv[0] is the request pointer. */
static inline fuse_req_t get_req(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return (fuse_req_t)(uintptr_t)d;
}

/* `m` must be fetched before replying: the reply frees the request. */
static inline napi_value done(napi_env env, hmount_t *m, int rc) {
  if (atomic_fetch_sub(&m->outstanding, 1) == 1 && m->closed) {
    maybe_destroy(m);
    release_m_if_done(m);
  }
  napi_value out;
  napi_create_int32(env, rc, &out);
  return out;
}

#define REPLY_PROLOGUE(N)                                                          \
  size_t argc = N;                                                                 \
  napi_value argv[N];                                                              \
  inst_t *in;                                                                      \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&in) != napi_ok ||   \
      argc < 1)                                                                    \
    return NULL;                                                                   \
  fuse_req_t req = get_req(env, argv[0]);                                          \
  if (!req) return NULL;                                                           \
  hmount_t *m = M(req);

/* replyErr(req, negErrnoOrZero) */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(2);
  int32_t e = 0;
  napi_get_value_int32(env, argv[1], &e);
  return done(env, m, fuse_reply_err(req, e < 0 ? -e : e));
}

/* replyEntry(req) -- entry in reply scratch */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(1);
  const slot_t *R = in->reply;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  fill_attr(&e.attr, R);
  e.ino = e.attr.st_ino;
  e.generation = (uint64_t)R[R_GEN].d;
  e.entry_timeout = R[R_ETO].d;
  e.attr_timeout = R[R_ATO].d;
  return done(env, m, fuse_reply_entry(req, &e));
}

/* replyAttr(req) -- attr + R_ATO in reply scratch */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(1);
  struct stat st;
  fill_attr(&st, in->reply);
  return done(env, m, fuse_reply_attr(req, &st, in->reply[R_ATO].d));
}

static void fill_fi(struct fuse_file_info *fi, const slot_t *R) {
  memset(fi, 0, sizeof *fi);
  fi->fh = (uint64_t)R[R_FH].d;
  int of = (int)R[R_OFLAGS].d;
  fi->direct_io = (of & 1) != 0;
  fi->keep_cache = (of & 2) != 0;
  fi->cache_readdir = (of & 4) != 0;
  fi->noflush = (of & 8) != 0;
}

/* replyOpen(req) -> rc; -ENOENT means the opener was interrupted and no release will follow */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(1);
  struct fuse_file_info fi;
  fill_fi(&fi, in->reply);
  return done(env, m, fuse_reply_open(req, &fi));
}

static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(1);
  const slot_t *R = in->reply;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  fill_attr(&e.attr, R);
  e.ino = e.attr.st_ino;
  e.generation = (uint64_t)R[R_GEN].d;
  e.entry_timeout = R[R_ETO].d;
  e.attr_timeout = R[R_ATO].d;
  struct fuse_file_info fi;
  fill_fi(&fi, R);
  return done(env, m, fuse_reply_create(req, &e, &fi));
}

/* replyBuf(req, buffer) -- read, readlink, getxattr/listxattr values */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(2);
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    /* Accept any TypedArray/DataView too; anything else is an adapter bug -> EIO. */
    napi_typedarray_type t;
    napi_value ab;
    size_t off = 0;
    if (napi_get_typedarray_info(env, argv[1], &t, &len, &data, &ab, &off) != napi_ok)
      return done(env, m, fuse_reply_err(req, EIO));
    if (t != napi_uint8_array && t != napi_int8_array && t != napi_uint8_clamped_array)
      return done(env, m, fuse_reply_err(req, EIO));
  }
  return done(env, m, fuse_reply_buf(req, data, len));
}

/* replyWrite(req, count) */
static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(2);
  double n = 0;
  napi_get_value_double(env, argv[1], &n);
  return done(env, m, fuse_reply_write(req, (size_t)n));
}

/* replyXattrSize(req, size) -- answer to a size-0 probe */
static napi_value js_reply_xattr(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(2);
  double n = 0;
  napi_get_value_double(env, argv[1], &n);
  return done(env, m, fuse_reply_xattr(req, (size_t)n));
}

/* replyStatfs(req) -- bsize, frsize, blocks, bfree, bavail, files, ffree, namemax in slots 0..7 */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(1);
  const slot_t *R = in->reply;
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = (unsigned long)R[0].d;
  sv.f_frsize = (unsigned long)R[1].d;
  sv.f_blocks = (fsblkcnt_t)R[2].d;
  sv.f_bfree = (fsblkcnt_t)R[3].d;
  sv.f_bavail = (fsblkcnt_t)R[4].d;
  sv.f_files = (fsfilcnt_t)R[5].d;
  sv.f_ffree = (fsfilcnt_t)R[6].d;
  sv.f_favail = sv.f_ffree;
  sv.f_namemax = (unsigned long)R[7].d;
  return done(env, m, fuse_reply_statfs(req, &sv));
}

/* replyDir(req, size, names: Buffer, meta: Float64Array [ino, mode, nextOffset, nameLen]*, count)
 * Packs with fuse_add_direntry until `size` bytes are used; returns how many entries fit. */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  REPLY_PROLOGUE(5);
  double dsize = 0, dcount = 0;
  napi_get_value_double(env, argv[1], &dsize);
  napi_get_value_double(env, argv[4], &dcount);
  char *names = NULL;
  size_t nameslen = 0;
  napi_get_buffer_info(env, argv[2], (void **)&names, &nameslen);
  napi_typedarray_type t;
  size_t mlen = 0, moff = 0;
  double *meta = NULL;
  napi_value ab;
  if (napi_get_typedarray_info(env, argv[3], &t, &mlen, (void **)&meta, &ab, &moff) != napi_ok ||
      t != napi_float64_array)
    return done(env, m, fuse_reply_err(req, EIO));
  size_t size = (size_t)dsize, count = (size_t)dcount;
  if (count * 4 > mlen) count = mlen / 4;
  char *buf = malloc(size ? size : 1);
  if (!buf) return done(env, m, fuse_reply_err(req, ENOMEM));
  size_t pos = 0, noff = 0, i;
  char name[4096]; /* the kernel's own FUSE name limit is at most PATH_MAX - 1 */
  for (i = 0; i < count; i++) {
    size_t nl = (size_t)meta[i * 4 + 3];
    if (noff + nl > nameslen) break;
    if (nl >= sizeof name) { noff += nl; continue; } /* unrepresentable: skip, keep going */
    memcpy(name, names + noff, nl);
    name[nl] = 0; /* fuse_add_direntry wants a C string */
    noff += nl;
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_ino = (ino_t)meta[i * 4];
    st.st_mode = (mode_t)meta[i * 4 + 1];
    size_t need = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)meta[i * 4 + 2]);
    if (need > size - pos) break;
    pos += need;
  }
  int rc = fuse_reply_buf(req, buf, pos);
  free(buf);
  done(env, m, rc);
  napi_value out;
  napi_create_uint32(env, (uint32_t)i, &out);
  return out;
}

/* setup(argsArrayBuffer, replyArrayBuffer) */
static napi_value js_setup(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  inst_t *in;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&in));
  size_t la = 0, lr = 0;
  void *pa, *pr;
  CHECK(napi_get_arraybuffer_info(env, argv[0], &pa, &la));
  CHECK(napi_get_arraybuffer_info(env, argv[1], &pr, &lr));
  if (la < A_NSLOTS * 8 || lr < R_NSLOTS * 8) {
    napi_throw_range_error(env, NULL, "scratch buffers too small");
    return NULL;
  }
  if (in->args_ref) napi_delete_reference(env, in->args_ref);
  if (in->reply_ref) napi_delete_reference(env, in->reply_ref);
  CHECK(napi_create_reference(env, argv[0], 1, &in->args_ref));
  CHECK(napi_create_reference(env, argv[1], 1, &in->reply_ref));
  in->args = pa;
  in->reply = pr;
  napi_value out;
  napi_create_object(env, &out);
  napi_value v;
  napi_create_uint32(env, A_NSLOTS, &v);
  napi_set_named_property(env, out, "argSlots", v);
  napi_create_uint32(env, R_NSLOTS, &v);
  napi_set_named_property(env, out, "replySlots", v);
  return out;
}

/* mount(mountpoint: string, argv: string[], flags: number, dispatch: Function) -> External */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  inst_t *in;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&in));
  if (!in->args) {
    napi_throw_error(env, NULL, "setup() must be called before mount()");
    return NULL;
  }
  char mnt[4096];
  size_t mlen = 0;
  CHECK(napi_get_value_string_utf8(env, argv[0], mnt, sizeof mnt, &mlen));
  uint32_t nargs = 0;
  CHECK(napi_get_array_length(env, argv[1], &nargs));
  int32_t flags = 0;
  CHECK(napi_get_value_int32(env, argv[2], &flags));

  char **fargv = calloc(nargs + 1, sizeof(char *));
  if (!fargv) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value s;
    size_t len = 0;
    napi_get_element(env, argv[1], i, &s);
    napi_get_value_string_utf8(env, s, NULL, 0, &len);
    fargv[i] = malloc(len + 1);
    napi_get_value_string_utf8(env, s, fargv[i], len + 1, &len);
  }
  struct fuse_args fa = FUSE_ARGS_INIT((int)nargs, fargv);

  hmount_t *m = calloc(1, sizeof *m);
  m->inst = in;
  m->flags = flags;
  atomic_init(&m->outstanding, 0);
  const char *err = NULL;

  m->se = fuse_session_new(&fa, &ll_ops, sizeof ll_ops, m);
  if (!m->se) err = "fuse_session_new failed (unknown -o option? see stderr)";
  if (!err) {
    napi_value name;
    napi_create_string_utf8(env, "hoardfs_fuse", NAPI_AUTO_LENGTH, &name);
    if (napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, m, tsfn_finalize, m,
                                        call_js, &m->tsfn) != napi_ok)
      err = "napi_create_threadsafe_function failed";
  }
  if (!err && fuse_session_mount(m->se, mnt) != 0) err = "fuse_session_mount failed (see stderr)";
  if (!err) {
    /* Large blocks and RSS. Thread mode: write payloads are malloc'ed on the FUSE threads and
     * freed on the JS thread; with glibc's sliding mmap threshold, 1 MiB blocks soon came from
     * per-thread arenas that keep what is freed into them (RSS 430 -> 575 MiB over 6 GiB), so
     * every block over 128 KiB is mmap'ed and returned at free (peak 390 MiB).
     * Main-loop mode: both ends are on the JS thread, and an mmap per 1 MiB payload costs 256
     * page faults on the thread that does everything else (sys 3.2 s/GiB). Blocks up to 2 MiB
     * (payloads, rows) come from the heap, which keeps up to 64 MiB free at its top: sys 2.0
     * s/GiB, writes 110 -> 130 MB/s, RSS writing 10 GiB 460 MiB (unbounded, it was 574).
     * HOARDFS_MMAP_KIB overrides the threshold (0: glibc's default, for measuring). */
    const char *e = getenv("HOARDFS_MMAP_KIB");
    int kib = e ? atoi(e) : (flags & MF_MAIN_LOOP) ? 2048 : 128;
    if (kib > 0) {
      mallopt(M_MMAP_THRESHOLD, kib * 1024);
      if (flags & MF_MAIN_LOOP) mallopt(M_TRIM_THRESHOLD, 64 << 20);
    }
  }
  if (!err && (flags & MF_MAIN_LOOP)) {
    uv_loop_t *loop = NULL;
    int fd = fuse_session_fd(m->se);
    napi_value resname;
    napi_create_string_utf8(env, "hoardfs_fuse_request", NAPI_AUTO_LENGTH, &resname);
    m->env = env;
    m->rbuf = malloc(RBUF_SIZE);
    m->poll = malloc(sizeof *m->poll);
    if (m->rbuf && (flags & MF_BORROW_WRITES)) {
      /* The ArrayBuffer owns rbuf from here on: a view JS kept by mistake stays valid memory. */
      napi_value ab;
      if (napi_create_external_arraybuffer(env, m->rbuf, RBUF_SIZE, free_rbuf, NULL, &ab) == napi_ok &&
          napi_create_reference(env, ab, 1, &m->rbuf_ref) != napi_ok)
        m->rbuf_ref = NULL;
    }
    if (!m->rbuf || !m->poll || napi_get_uv_event_loop(env, &loop) != napi_ok ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
        napi_create_reference(env, argv[3], 1, &m->dispatch_ref) != napi_ok ||
        napi_async_init(env, NULL, resname, &m->actx) != napi_ok ||
        uv_poll_init(loop, m->poll, fd) != 0) {
      err = "cannot watch /dev/fuse on the event loop";
      free(m->poll);
      m->poll = NULL;
    } else {
      m->poll->data = m;
      uv_poll_start(m->poll, UV_READABLE, on_fuse_readable);
    }
    if (err) fuse_session_unmount(m->se);
  } else if (!err) {
    /* Node owns signal handling; keep the loop thread (and the workers libfuse spawns from it,
     * which inherit the mask) from ever receiving process signals. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&m->thread, NULL, loop_thread, m) != 0) err = "pthread_create failed";
    else m->thread_started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) fuse_session_unmount(m->se);
  }
  fuse_opt_free_args(&fa);
  for (uint32_t i = 0; i < nargs; i++) free(fargv[i]);
  free(fargv);
  if (err) {
    release_rbuf(env, m);
    if (m->se) fuse_session_destroy(m->se);
    if (m->tsfn) {
      m->se_destroyed = 1;
      m->se = NULL;
      napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort); /* finalizer frees m */
    } else {
      free(m);
    }
    napi_throw_error(env, NULL, err);
    return NULL;
  }
  napi_value ext;
  CHECK(napi_create_external(env, m, NULL, NULL, &ext));
  return ext;
}

static hmount_t *get_m(napi_env env, napi_value v) {
  hmount_t *m = NULL;
  if (napi_get_value_external(env, v, (void **)&m) != napi_ok) return NULL;
  return m;
}

/* close(handle): call after OP_EXIT. Joins the loop thread, closes /dev/fuse (unmounting if the
 * kernel still has it mounted), and destroys the session once every request is answered. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  hmount_t *m = get_m(env, argv[0]);
  if (!m || m->closed) return NULL;
  if (m->thread_started) pthread_join(m->thread, NULL);
  m->thread_started = 0;
  if (m->poll) {
    uv_poll_stop(m->poll);
    uv_close((uv_handle_t *)m->poll, free_poll);
    m->poll = NULL;
  }
  if (m->dispatch_ref) napi_delete_reference(env, m->dispatch_ref);
  m->dispatch_ref = NULL;
  if (m->actx) napi_async_destroy(env, m->actx);
  m->actx = NULL;
  release_rbuf(env, m);
  /* The mt loop clears the exited flag on its way out; set it again so that replies arriving
   * after this point fail quietly instead of printing "fuse: writing device". */
  fuse_session_exit(m->se);
  /* Sees POLLERR when the kernel side is already gone and then only closes the fd. */
  fuse_session_unmount(m->se);
  m->closed = 1;
  m->tsfn_released = 1;
  napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
  maybe_destroy(m);
  /* m is freed by whichever of tsfn_finalize / last reply comes last. */
  return NULL;
}

/* info(handle) -> negotiated parameters (valid after the kernel's INIT) */
static napi_value js_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  hmount_t *m = get_m(env, argv[0]);
  napi_value out, v;
  napi_create_object(env, &out);
  if (!m) return out;
#define PROP(name, val)                                                            \
  napi_create_double(env, (double)(val), &v);                                      \
  napi_set_named_property(env, out, name, v);
  PROP("maxWrite", m->max_write);
  PROP("maxReadahead", m->max_readahead);
  PROP("capable", m->capable);
  PROP("want", m->want);
  PROP("protoMinor", m->proto_minor);
  PROP("outstanding", atomic_load(&m->outstanding));
#undef PROP
  return out;
}

static void inst_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  inst_t *in = data;
  if (in->args_ref) napi_delete_reference(env, in->args_ref);
  if (in->reply_ref) napi_delete_reference(env, in->reply_ref);
  free(in);
}

NAPI_MODULE_INIT() {
  inst_t *in = calloc(1, sizeof *in);
  napi_set_instance_data(env, in, inst_finalize, NULL);
  napi_property_descriptor props[] = {
#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, in}
    FN("setup", js_setup),
    FN("mount", js_mount),
    FN("close", js_close),
    FN("info", js_info),
    FN("replyErr", js_reply_err),
    FN("replyEntry", js_reply_entry),
    FN("replyAttr", js_reply_attr),
    FN("replyOpen", js_reply_open),
    FN("replyCreate", js_reply_create),
    FN("replyBuf", js_reply_buf),
    FN("replyWrite", js_reply_write),
    FN("replyXattr", js_reply_xattr),
    FN("replyStatfs", js_reply_statfs),
    FN("replyDir", js_reply_dir),
#undef FN
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
