/* sharedmap.h: the public C API of sharedmap, and its manual.
 *
 * sharedmap publishes an immutable key->value snapshot once and lets any number
 * of processes read it, lock-free, straight out of shared memory (or a file, or a
 * memory buffer).  The byte layout of a snapshot is specified in docs/FORMAT.md.
 *
 *   sm_builder  a private, writable, ordered dictionary.  Fill it, then write it
 *               out as a snapshot: sm_publish() (shared memory, by name),
 *               sm_save() (a file), or sm_builder_layout() + sm_builder_write()
 *               (your own buffer).
 *   sm_reader   a read-only view of one snapshot: point lookups (sm_get), ordered
 *               cursors (sm_seek_*, sm_cursor_*), rank and prefix queries, and a
 *               full integrity check (sm_reader_verify).
 *   sm_bitmap   a mutable bitset in shared memory that many processes set, test-and-set
 *               and read atomically, and resize in place (the last section below).
 *
 * Conventions
 *   - Every function that can fail returns int: 0 on success, -errno for a system
 *     failure (e.g. -ENOENT, -EEXIST, -EACCES, -ENOSPC), or one of the negative
 *     SM_E* codes below.  sm_strerror() turns any of them into a message.
 *     SM_NOTFOUND is not a failure: it is the "no such key / past the end" answer.
 *   - There is no global state.  Constructors fill an out-pointer and return int;
 *     sm_*_free(NULL) and sm_reader_close(NULL) are no-ops.
 *   - Keys are byte strings of a kind fixed per map: SM_KEYS_BYTES (any bytes),
 *     SM_KEYS_STR (valid UTF-8, ordered by code point, which is the byte order of
 *     UTF-8) or SM_KEYS_INT (signed 64-bit integers, passed and handed out as the 8
 *     bytes sm_key_int() makes, whose byte order is the numeric order).  Keys sort by
 *     unsigned bytewise comparison, shorter first on a tie.
 *   - Threads: a reader is immutable once opened; any number of threads may use
 *     one reader (and their own cursors) at once without locking.  A builder is
 *     not thread-safe: one thread at a time, including during sm_builder_write.
 *   - Memory: pointers that a reader hands out (keys, str and bytes values) point
 *     into the snapshot; they are owned by the reader and valid until
 *     sm_reader_close().  Pointers a builder hands out are valid until the next
 *     call that modifies that builder.
 *   - A snapshot is never trusted: every offset and length is checked against the
 *     size of the mapping before it is used, so hostile bytes give SM_E* errors,
 *     never a crash.  Opening checks the header in O(1); sm_reader_verify() checks
 *     everything in O(n).  One thing no check can prevent: a process that may write
 *     the file (its owner, or a group given write access by the mode) truncating
 *     it after a reader mapped it; touching the lost pages then raises SIGBUS in
 *     the reader.  sharedmap itself never truncates or rewrites a published file:
 *     it replaces it by a new one.
 *   - Platform: Linux with glibc >= 2.28 (renameat2; src/compat.h stands in for the
 *     newer symbols) and kernel >= 3.17 (O_TMPFILE, renameat2 and posix_fallocate on
 *     tmpfs, getrandom), and a compiler with unsigned __int128 (64-bit targets).
 */
#ifndef SHAREDMAP_H
#define SHAREDMAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(SM_STATIC)
#define SM_API __attribute__((visibility("default")))
#else
#define SM_API
#endif

#define SM_VERSION_MAJOR 0
#define SM_VERSION_MINOR 2
#define SM_VERSION_PATCH 0
#define SM_VERSION_STRING "0.2.0"

/** The snapshot format version this library writes and the only one it reads. */
#define SM_FORMAT_VERSION 1

/* ---------------------------------------------------------------- errors */

/* The library's own error codes, the one list of them:
 * XX(name, value, python_class, message).  Values sit in a reserved negative block
 * far from any -errno.  python_class names the exception the Python binding raises
 * for the code (sharedmap.NotASnapshotError, ...: see the binding's errors.c; KeyError
 * is Python's own); C callers ignore it. */
#define SM_ERROR_MAP(XX)                                                                           \
    XX(SM_NOTFOUND, -30700, KeyError,                                                              \
       "not found")                                                                                \
    XX(SM_EBADMAGIC, -30701, NotASnapshotError,                                                    \
       "not a sharedmap snapshot (bad magic)")                                                     \
    XX(SM_EENDIAN, -30702, CorruptSnapshotError,                                                   \
       "snapshot has the wrong byte order")                                                        \
    XX(SM_EVERSION, -30703, UnsupportedVersionError,                                               \
       "unsupported snapshot format version")                                                      \
    XX(SM_EFEATURE, -30704, UnsupportedVersionError,                                               \
       "snapshot requires a feature this library does not support")                                \
    XX(SM_EHEADER, -30705, CorruptSnapshotError,                                                   \
       "snapshot header is corrupt")                                                               \
    XX(SM_ETRUNCATED, -30706, CorruptSnapshotError,                                                \
       "snapshot size does not match its header (truncated or padded)")                            \
    XX(SM_ECORRUPT, -30707, CorruptSnapshotError,                                                  \
       "snapshot data is corrupt")                                                                 \
    XX(SM_ECHECKSUM, -30708, CorruptSnapshotError,                                                 \
       "snapshot checksum mismatch")                                                               \
    XX(SM_EKEYKIND, -30709, KeyKindError,                                                          \
       "key kind mismatch (str, bytes and int keys cannot be mixed)")                              \
    XX(SM_EUTF8, -30710, CorruptSnapshotError,                                                     \
       "invalid UTF-8 in a str key or value")                                                      \
    XX(SM_ENAME, -30711, InvalidNameError,                                                         \
       "invalid map name (empty, too long, '/' or a control character)")                           \
    XX(SM_ETOOBIG, -30712, TooLargeError,                                                          \
       "key, value or snapshot too large for the format")                                          \
    XX(SM_ETYPE, -30713, CorruptSnapshotError,                                                     \
       "invalid value type")                                                                       \
    XX(SM_ENOTSNAPSHOT, -30714, NotASnapshotError,                                                 \
       "file is not a regular file")                                                               \
    XX(SM_ESYMLINK, -30715, SymlinkError,                                                          \
       "file is a symbolic link; sharedmap never follows symlinks")                                \
    XX(SM_EORDER, -30716, OrderError,                                                              \
       "keys out of order (a sorted writer was given a key below the one before it)")              \
    XX(SM_EMANIFEST, -30717, CorruptSnapshotError,                                                 \
       "map set manifest is corrupt")                                                              \
    XX(SM_ESHARD, -30718, CorruptSnapshotError,                                                    \
       "a shard of the map set is missing, damaged or not the one its manifest names")         \
    XX(SM_EBASE, -30719, CorruptSnapshotError,                                                     \
       "the base of a layered map is missing, damaged or not the one its layer names")         \
    XX(SM_ECONFLICT, -30720, ConflictError,                                                        \
       "the map was replaced since the edit began; the edit was not published")

enum {
#define SM_XX_ENUM(name, value, pyclass, msg) name = value,
    SM_ERROR_MAP(SM_XX_ENUM)
#undef SM_XX_ENUM
    SM_OK = 0
};

/** A static message for any code this library returns (SM_E*, SM_NOTFOUND, -errno,
 *  0).  Never NULL; the string must not be freed. */
SM_API const char *sm_strerror(int code);

/** The symbolic name of a code ("SM_ECORRUPT", "ENOENT", ...), or NULL if unknown. */
SM_API const char *sm_errname(int code);

/* ---------------------------------------------------------------- handles */

/** A private, writable, ordered dictionary that becomes a snapshot. */
typedef struct sm_builder sm_builder;
/** A read-only view of one snapshot (shared memory, file or memory buffer). */
typedef struct sm_reader sm_reader;

/* ---------------------------------------------------------------- values */

/** Which kind of key a map holds.  A map with no entries may be SM_KEYS_NONE. */
typedef enum sm_key_kind {
    SM_KEYS_NONE = 0,
    SM_KEYS_BYTES = 1,
    SM_KEYS_STR = 2,
    SM_KEYS_INT = 3 /* int64_t, as the SM_INT_KEY_SIZE bytes of sm_key_int() */
} sm_key_kind;

/** An int key is SM_INT_KEY_SIZE bytes: the key as an unsigned number with its sign bit
 *  flipped (i + 2^63), big-endian.  Their byte order is the keys' numeric order, so int
 *  maps iterate, bisect and range in numeric order through the same calls as the other
 *  kinds.  Snapshots of int maps need a reader of this version or later (FORMAT.md §9). */
#define SM_INT_KEY_SIZE 8

/** The key bytes of @p i, for sm_get(), sm_builder_put() and the rest on an int map. */
static inline void sm_key_int(int64_t i, unsigned char out[SM_INT_KEY_SIZE]) {
    uint64_t u = (uint64_t)i ^ (UINT64_C(1) << 63);
    for (int k = SM_INT_KEY_SIZE - 1; k >= 0; k--, u >>= 8)
        out[k] = (unsigned char)u;
}

/** The integer of SM_INT_KEY_SIZE key bytes (a key handed out by an int map). */
static inline int64_t sm_key_int_value(const void *key) {
    const unsigned char *p = (const unsigned char *)key;
    uint64_t u = 0;
    for (int k = 0; k < SM_INT_KEY_SIZE; k++)
        u = u << 8 | p[k];
    u ^= UINT64_C(1) << 63;
    return (int64_t)u; /* two's complement: the conversion every supported compiler makes */
}

/** Value types.  The numbers are the type codes stored in a snapshot. */
typedef enum sm_type {
    SM_NONE = 0,  /* no payload */
    SM_FALSE = 1, /* no payload */
    SM_TRUE = 2,  /* no payload */
    SM_INT = 3,   /* as.i: a signed 64-bit integer */
    SM_FLOAT = 4, /* as.f: an IEEE 754 binary64 (every bit kept: -0.0, NaN payloads) */
    SM_BYTES = 5, /* as.buf: any bytes */
    SM_STR = 6    /* as.buf: UTF-8 text (validated on insert) */
} sm_type;

typedef struct sm_buf {
    const void *data;
    size_t size;
} sm_buf;

typedef struct sm_value {
    sm_type type;
    union {
        int64_t i;
        double f;
        sm_buf buf;
    } as;
} sm_value;

/** One entry, as returned by cursors and sm_builder_at(). */
typedef struct sm_entry {
    sm_buf key;
    sm_value value;
} sm_entry;

static inline sm_value sm_value_none(void) { sm_value v; v.type = SM_NONE; v.as.i = 0; return v; }
static inline sm_value sm_value_bool(int b) { sm_value v; v.type = b ? SM_TRUE : SM_FALSE; v.as.i = 0; return v; }
static inline sm_value sm_value_int(int64_t i) { sm_value v; v.type = SM_INT; v.as.i = i; return v; }
static inline sm_value sm_value_float(double f) { sm_value v; v.type = SM_FLOAT; v.as.f = f; return v; }
static inline sm_value sm_value_bytes(const void *p, size_t n) { sm_value v; v.type = SM_BYTES; v.as.buf.data = p; v.as.buf.size = n; return v; }
static inline sm_value sm_value_str(const char *p, size_t n) { sm_value v; v.type = SM_STR; v.as.buf.data = p; v.as.buf.size = n; return v; }

/* ---------------------------------------------------------------- builder */

/** Create an empty builder.  Its key kind is decided by the first insertion and
 *  forgotten again whenever it becomes empty.  Free it with sm_builder_free(). */
SM_API int sm_builder_new(sm_builder **out);

/** Free a builder and everything it owns.  NULL is a no-op. */
SM_API void sm_builder_free(sm_builder *b);

/** Insert or overwrite.  The key and value bytes are copied.
 *  @return 0; SM_EKEYKIND if kind differs from the keys already present;
 *          SM_EUTF8 for a SM_KEYS_STR key or SM_STR value that is not valid UTF-8;
 *          SM_ETYPE for an unknown value type; SM_ETOOBIG; -ENOMEM; -EINVAL for
 *          kind SM_KEYS_NONE, a NULL value, a NULL pointer with a non-zero length,
 *          or a SM_KEYS_INT key that is not SM_INT_KEY_SIZE bytes (sm_key_int()). */
SM_API int sm_builder_put(sm_builder *b, sm_key_kind kind, const void *key, size_t klen,
                          const sm_value *value);

/** As sm_builder_put(), for a key the builder is known not to hold, such as each key of
 *  one dictionary put into an empty builder: into an empty builder it appends without
 *  looking the key up, and the builder's hash index is only built when a lookup, put or
 *  deletion next needs one (a builder filled this way and then written never builds
 *  it: less time and memory).  Into a builder whose index is built (one that holds
 *  entries put otherwise, or whose index a lookup, put, deletion or
 *  sm_builder_put_reader() has built), it is sm_builder_put().  A key that was held after
 *  all is no error: the later value wins, as with sm_builder_put(), when the index or the
 *  key order is next built (by sm_builder_get/put/del/put_reader/at or a layout), which
 *  then changes sm_builder_version(); until then sm_builder_count() counts that key
 *  twice.  @return as sm_builder_put(). */
SM_API int sm_builder_put_new(sm_builder *b, sm_key_kind kind, const void *key, size_t klen,
                              const sm_value *value);

/** Make room for @p n entries in all, so that filling the builder up to n entries does
 *  not grow its array of entries again.  @return 0, SM_ETOOBIG (more than 2^32 - 2) or
 *  -ENOMEM. */
SM_API int sm_builder_reserve(sm_builder *b, size_t n);

/** Look a key up.  On 0, *out (if not NULL) holds the value; its buffer points into
 *  the builder and is valid until the next modification.  @return 0, SM_NOTFOUND, or
 *  -ENOMEM when it must first build the index of keys put by sm_builder_put_new(). */
SM_API int sm_builder_get(const sm_builder *b, const void *key, size_t klen, sm_value *out);

/** Delete a key.  @return 0, SM_NOTFOUND, or -ENOMEM as sm_builder_get(). */
SM_API int sm_builder_del(sm_builder *b, const void *key, size_t klen);

/** Remove every entry (and forget the key kind).  Changes sm_builder_version(). */
SM_API void sm_builder_clear(sm_builder *b);

SM_API size_t sm_builder_count(const sm_builder *b);
SM_API sm_key_kind sm_builder_key_kind(const sm_builder *b);

/** A counter that changes whenever a key is inserted or deleted (not when a value
 *  is overwritten): iterators use it to detect a change of size under them. */
SM_API uint64_t sm_builder_version(const sm_builder *b);

/** The entry of rank @p rank in key order (0 = smallest).  Sorts the builder the
 *  first time after an insertion or deletion (O(n log n)), then O(1).
 *  @return 0, or SM_NOTFOUND when rank >= count, or -ENOMEM. */
SM_API int sm_builder_at(sm_builder *b, size_t rank, sm_entry *out);

/** A builder holding a copy of everything in @p r, made in one linear pass (the
 *  snapshot is already in key order, so nothing is sorted): sm_builder_new() and
 *  sm_builder_put_reader().
 *  @return 0, -ENOMEM, or SM_ECORRUPT / SM_EUTF8 / SM_ETYPE if the snapshot is
 *  damaged (then *out is untouched). */
SM_API int sm_builder_from_reader(sm_builder **out, const sm_reader *r);

/** Copy every entry of @p r into @p b, overwriting the value of each key @p b already
 *  holds: sm_builder_put() of each entry, all or nothing.  Into an empty builder
 *  (which takes r's key kind) this is one linear pass, as sm_builder_from_reader():
 *  the snapshot is in key order, so nothing is sorted later; into a non-empty one it
 *  is O(1) per entry, and the next sm_builder_at() or layout sorts if r's keys fall
 *  between b's.  A snapshot with no entries changes nothing, whatever its key kind.
 *  Every entry is read, checked and copied before @p b changes, so after an error @p b
 *  holds exactly what it held (same entries, key kind and sm_builder_version(), but for
 *  a key that sm_builder_put_new() appended twice, merged first as that documents); the
 *  bytes are copied, so @p r may be closed afterwards.  @p b needs room for all of
 *  r's entries beside its own, as if none of r's keys were in it, and keeps that room.
 *  Damage that leaves every entry readable (keys out of order, a key twice) is not
 *  an error here: the entries go in as sm_builder_put() takes them.
 *  @return 0; SM_EKEYKIND if @p b holds keys of the other kind; if the snapshot is
 *          damaged, SM_ECORRUPT (a record or value that cannot be read) or SM_EUTF8
 *          (a str key or value that is not UTF-8); SM_ETOOBIG (more entries than a
 *          builder can hold: 2^32 - 2); -ENOMEM. */
SM_API int sm_builder_put_reader(sm_builder *b, const sm_reader *r);

/** Lay the snapshot out (sort, hash, place) and report its exact size in bytes.
 *  The layout is kept until the builder is modified.
 *  @return 0, -ENOMEM, SM_ETOOBIG (more than 2^48 bytes of records). */
SM_API int sm_builder_layout(sm_builder *b, uint64_t *size);

/** Pass as created_ns to stamp the snapshot with the time its layout was computed. */
#define SM_CREATED_AUTO UINT64_MAX

/** Write the snapshot into @p buf, which must hold exactly the size reported by
 *  sm_builder_layout() (computing the layout first if needed).  @p created_ns is
 *  stored in the header (nanoseconds since the Unix epoch; 0 is allowed), or, with
 *  SM_CREATED_AUTO, the time at which the current layout was computed: that is what
 *  sm_publish() and sm_save() use, so the bytes of an unchanged builder are the same
 *  whichever way they are written.
 *  The bytes are a complete snapshot: sm_reader_open_mem() opens them.
 *  @return 0, -EINVAL if size is wrong, or what sm_builder_layout() returns. */
SM_API int sm_builder_write(sm_builder *b, void *buf, uint64_t size, uint64_t created_ns);

/* ---------------------------------------------------------------- publishing */

/** Default directory of published maps: a tmpfs, so a map lives in shared memory.
 *  A map named NAME is the file SM_DEFAULT_DIR "/" SM_NAME_PREFIX NAME. */
#define SM_DEFAULT_DIR "/dev/shm"
#define SM_NAME_PREFIX "sharedmap."
/** Longest map name, in bytes.  Names may not be empty or contain '/', NUL or a
 *  control character (bytes 0x01-0x1f and 0x7f, which could spoof what `ls` shows);
 *  any other bytes are allowed, UTF-8 or not. */
#define SM_NAME_MAX 200

/* flags for sm_publish / sm_save */
#define SM_FORCE 0x1u /* replace an existing map atomically instead of failing with -EEXIST */

/** Default permission bits of a new map or file: owner read/write only. */
#define SM_DEFAULT_MODE 0600u

/** Check a map name (see SM_NAME_MAX).  @return 0 or SM_ENAME. */
SM_API int sm_name_check(const char *name);

/** The path of the map @p name in directory @p dir (NULL means SM_DEFAULT_DIR):
 *  dir "/" SM_NAME_PREFIX name, the file that sm_publish() creates and
 *  sm_reader_open_shm() opens, written with its NUL into @p buf, which holds @p cap
 *  bytes (PATH_MAX is enough for any path the system can open; @p buf may be NULL
 *  if @p cap is 0).  Only the name is checked: the map need not exist, and @p dir is
 *  used as given.
 *  @return 0; SM_ENAME (see sm_name_check); -ENAMETOOLONG if the path and its NUL do
 *          not fit in @p cap bytes.  On an error @p buf holds "" (when @p cap > 0). */
SM_API int sm_map_path(const char *dir, const char *name, char *buf, size_t cap);

/** Publish the builder's snapshot under @p name in directory @p dir (NULL means
 *  SM_DEFAULT_DIR).  The snapshot is written completely into a new object under a
 *  temporary name (space reserved first, so a full filesystem is -ENOSPC here and
 *  never a SIGBUS later), given the permission bits @p mode exactly (0 to 0777;
 *  the umask does not apply; 0 means SM_DEFAULT_MODE; setuid, setgid, sticky or
 *  any other bit is -EINVAL), and then renamed to its public name in one atomic
 *  step.  Without SM_FORCE an existing map gives -EEXIST and is left alone; with
 *  it the existing map is replaced atomically: readers attached to it keep it,
 *  new readers get the new one, nobody ever sees a partial map.  The replaced
 *  snapshot has its superseded word set (sm_reader_superseded) before it is
 *  unlinked, by this call or by a concurrent sm_gc() that gets to it first; one
 *  whose mode denies its owner write access (0444) gets u+w to be marked.  Only a
 *  regular file is ever replaced: a directory, symlink or other object under the
 *  name is refused and left as it is.
 *  @return 0, SM_ENAME, -EINVAL (a bad mode), -EEXIST, -ENOSPC, -EACCES / -EPERM
 *          (e.g. replacing another user's map), with SM_FORCE -EISDIR (a directory under the name),
 *          SM_ESYMLINK (a symlink), SM_ENOTSNAPSHOT (a FIFO, socket, device), what
 *          sm_builder_layout() returns, other -errno. */
SM_API int sm_publish(sm_builder *b, const char *dir, const char *name, unsigned flags,
                      unsigned mode);

/** Write the builder's snapshot to the file @p path, atomically (temporary file,
 *  fsync, rename, fsync of the directory), with the same flags and mode rules as
 *  sm_publish().  The final component of @p path is never followed as a symlink,
 *  and, as with sm_publish(), only a regular file there is replaced (-EISDIR,
 *  SM_ESYMLINK, SM_ENOTSNAPSHOT otherwise).
 *  A replaced snapshot file gets its superseded word set (so readers of it can
 *  refresh; other hard links to it see that too, and the u+w it may need for it)
 *  and is unlinked, never truncated.
 *  An error from the final fsync of
 *  the directory is returned although the new file is already in place. */
SM_API int sm_save(sm_builder *b, const char *path, unsigned flags, unsigned mode);

/* ---- the streaming writer: a snapshot from a stream of entries, in bounded memory ----
 *
 *   sm_writer *w;  sm_writer_opts o = SM_WRITER_OPTS_INIT;
 *   sm_writer_open_file(&w, "ids.smap", 0, 0, &o);
 *   while (...) sm_writer_add(w, SM_KEYS_STR, key, klen, &value);
 *   rc = sm_writer_commit(w);     (or sm_writer_free(w) alone, to abandon it)
 *   sm_writer_free(w);
 *
 * The entries need not fit in memory.  Records go straight to the output file in key
 * order (with pwrite, so a full filesystem is -ENOSPC, never a SIGBUS); entries that
 * come in any order are sorted in runs of at most memory_limit bytes, which spill to
 * anonymous temporary files in temp_dir (nothing left behind, even after a SIGKILL)
 * and are merged; the hash table is made from (hash, offset) pairs sorted in chunks
 * that spill the same way.  The snapshot is the one sm_builder_write() makes of the
 * same entries, byte for byte (with the same created_ns).  A duplicate key: the last
 * entry added wins, as in a dict.  The output appears under its name only when
 * sm_writer_commit() succeeds, by the protocol of sm_publish() / sm_save(). */
typedef struct sm_writer sm_writer;

#define SM_WRITER_SORTED 0x1u /* the keys come in ascending order (checked: SM_EORDER) */

typedef struct sm_writer_opts {
    size_t memory_limit;  /* bytes of buffers the writer may hold; 0: SM_WRITER_MEMORY_DEFAULT;
                           * at least SM_WRITER_MEMORY_MIN is used */
    unsigned flags;       /* SM_WRITER_SORTED */
    const char *temp_dir; /* where runs spill; NULL: $TMPDIR, else /tmp */
    uint64_t created_ns;  /* the header's created; SM_CREATED_AUTO: now, at commit */
} sm_writer_opts;

#define SM_WRITER_MEMORY_DEFAULT ((size_t)256 << 20)
#define SM_WRITER_MEMORY_MIN ((size_t)4 << 20)
#define SM_WRITER_OPTS_INIT {0, 0, NULL, UINT64_MAX}

/** A writer whose snapshot will be published as @p name in @p dir (NULL:
 *  SM_DEFAULT_DIR), with the @p flags (SM_FORCE) and @p mode of sm_publish().
 *  @p opts may be NULL (the defaults).  The temporary file is created now.
 *  @return 0, SM_ENAME, -EINVAL (a bad mode or option), -ENOMEM, -errno. */
SM_API int sm_writer_open_shm(sm_writer **out, const char *dir, const char *name, unsigned flags,
                              unsigned mode, const sm_writer_opts *opts);

/** A writer whose snapshot will be saved as the file @p path, as sm_save() does (fsync,
 *  atomic rename).  @return as sm_writer_open_shm(), -EISDIR for a path ending in '/'. */
SM_API int sm_writer_open_file(sm_writer **out, const char *path, unsigned flags, unsigned mode,
                               const sm_writer_opts *opts);

/** Add an entry: @p key of @p klen bytes of kind @p kind (an int key: its
 *  SM_INT_KEY_SIZE bytes, sm_key_int()), and @p value, which is copied.  The first entry
 *  fixes the kind.  An entry refused for itself (SM_EKEYKIND, SM_EUTF8, SM_ETYPE,
 *  SM_ETOOBIG, -EINVAL, SM_EORDER) is not added and the writer goes on; any other error
 *  (-ENOMEM, -ENOSPC, -errno: a spill or the output may now miss a record) leaves the
 *  writer failed, and every later call and sm_writer_commit() return it again.
 *  @return 0, SM_EKEYKIND, SM_EUTF8, SM_ETYPE, SM_ETOOBIG, -EINVAL, SM_EORDER (with
 *  SM_WRITER_SORTED, a key below the one before it), -ENOMEM, -ENOSPC, -errno. */
SM_API int sm_writer_add(sm_writer *w, sm_key_kind kind, const void *key, size_t klen,
                         const sm_value *value);

/** The number of entries added so far that are in the snapshot (duplicates that a
 *  later entry replaced are counted once only after commit: before it, this is an upper
 *  bound). */
SM_API uint64_t sm_writer_count(const sm_writer *w);

/** Finish the snapshot and publish it (sm_publish()'s or sm_save()'s last step).
 *  Called once; the writer is then done (free it).  @return 0, the writer's error if
 *  an add failed, -EEXIST, SM_ETOOBIG, -ENOSPC, -ENOMEM, what sm_publish() returns. */
SM_API int sm_writer_commit(sm_writer *w);

/** Free the writer; if it was not committed, abandon it: nothing of it stays behind. */
SM_API void sm_writer_free(sm_writer *w);

/** Unpublish @p name from @p dir (NULL: SM_DEFAULT_DIR).  The map is renamed out of
 *  its name, its superseded word set, and unlinked (like sm_publish(), by this call
 *  or by a concurrent sm_gc()).  Readers already attached keep working, and
 *  sm_reader_superseded() tells them; new attaches fail with -ENOENT.  Only a
 *  regular file is removed: anything else under the name is left as it is.  A map
 *  edited by delta layers takes its base and edit lock with it (unless an editor holds
 *  the lock then: sm_gc() removes them later; readers attached keep their mapping).
 *  @return 0 once the map has left its name, -ENOENT if there was no such map,
 *  -EISDIR / SM_ESYMLINK / SM_ENOTSNAPSHOT (a directory / symlink / other object
 *  under the name), SM_ENAME, other -errno. */
SM_API int sm_unpublish(const char *dir, const char *name);

/* ---------------------------------------------------------------- reader */

/** What a reader knows about its snapshot. */
typedef struct sm_info {
    uint64_t size;        /* bytes of the snapshot */
    uint64_t count;       /* entries */
    uint64_t created_ns;  /* as written by the builder; ns since the Unix epoch */
    uint64_t hash_seed;
    uint64_t checksum;    /* the body checksum stored in the header */
    uint64_t dev, ino;    /* identity of the file it was opened from (0 for memory) */
    unsigned format_version;
    sm_key_kind key_kind;
} sm_info;

/** Attach to the map published as @p name in @p dir (NULL: SM_DEFAULT_DIR).
 *  The map is mapped read-only (no write access is needed or used); the header is
 *  validated in O(1).  A symlink under the name is never followed.
 *  @return 0, -ENOENT, -EACCES, SM_ENAME, SM_ESYMLINK (a symlink under the name),
 *  SM_ENOTSNAPSHOT (a directory, FIFO, ... under the name), SM_EBADMAGIC, ... */
SM_API int sm_reader_open_shm(sm_reader **out, const char *dir, const char *name);

/** Open a snapshot file read-only by mmap.  The last path component is not
 *  followed if it is a symlink (SM_ESYMLINK; -ELOOP only for too many symlinks in
 *  the directories of @p path).  Same checks as sm_reader_open_shm(). */
SM_API int sm_reader_open_file(sm_reader **out, const char *path);

/** Open a snapshot held in memory, without copying it.  The caller keeps
 *  [data, data+size) alive and unchanged until sm_reader_close(); it need not be
 *  aligned. */
SM_API int sm_reader_open_mem(sm_reader **out, const void *data, size_t size);

/** Unmap and free.  NULL is a no-op.  Every pointer obtained from the reader
 *  becomes invalid. */
SM_API void sm_reader_close(sm_reader *r);

SM_API uint64_t sm_reader_count(const sm_reader *r);
SM_API sm_key_kind sm_reader_key_kind(const sm_reader *r);
SM_API void sm_reader_info(const sm_reader *r, sm_info *out);

/** The whole snapshot: its first byte, and its size in *size. */
SM_API const void *sm_reader_data(const sm_reader *r, size_t *size);

/** Whether a publisher has since replaced or removed this snapshot under its name or
 *  path (one atomic load of the snapshot's "superseded" word: no system call).  When
 *  it says 1, open the name (or path) again to get the newest version.  Always 0 for
 *  snapshots that were never published or saved, such as memory buffers. */
SM_API int sm_reader_superseded(const sm_reader *r);

/** Point lookup: O(1), typically two memory accesses into the snapshot.
 *  @return 0 (and *out, if not NULL, holds the value), SM_NOTFOUND, or
 *          SM_ECORRUPT if the snapshot turns out to be damaged. */
SM_API int sm_get(const sm_reader *r, const void *key, size_t klen, sm_value *out);

/** Look up @p n keys at once: the same answers as sm_get() of each, in much less time
 *  per key when the snapshot is larger than the caches.  A lookup is two dependent
 *  memory accesses (the slot's cache line, then the record); one at a time the CPU
 *  waits for each, while here the keys go through in groups (SM_GET_MANY_WINDOW of
 *  them): every key of a group is hashed and its slot line prefetched, then every slot
 *  probed and the record it names prefetched, then every key compared and its value
 *  decoded, so the misses of a group overlap.
 *  @p keys[i] is the i-th key (an int map's keys are sm_key_int() bytes).
 *  @p status[i] receives what sm_get() would return for it: 0, SM_NOTFOUND or
 *  SM_ECORRUPT; @p values[i] (when @p values is not NULL) its value where status[i]
 *  is 0, and is left alone otherwise.  A damaged snapshot fails only the keys whose
 *  lookup meets the damage; every key is looked up whatever the others gave.
 *  @return 0 if every status is 0 or SM_NOTFOUND, else the first error among them
 *          (lowest i); -EINVAL if @p n > 0 and @p keys or @p status is NULL. */
SM_API int sm_get_many(const sm_reader *r, size_t n, const sm_buf *keys, sm_value *values,
                       int *status);

/** sm_get_many() for an int map's keys given as integers (no sm_key_int() needed): on an
 *  int map, the same answers as sm_get() of each key's sm_key_int() bytes.  On a map of
 *  another kind every key is SM_NOTFOUND (even a bytes key that equals those 8 bytes). */
SM_API int sm_get_many_int(const sm_reader *r, size_t n, const int64_t *keys, sm_value *values,
                           int *status);

/** The number of keys sm_get_many() keeps in flight (bench/cbatch.c measures 1 to 64). */
#define SM_GET_MANY_WINDOW 16

/** Full check, O(n): body checksum, every record, key order, the sample index,
 *  the hash table (every slot points at a record whose hash matches, every record
 *  reachable exactly once), UTF-8 of str keys and values.
 *  @return 0, SM_ECHECKSUM, SM_ECORRUPT, SM_EUTF8, -ENOMEM (it needs about 9 bytes
 *          of memory per entry). */
SM_API int sm_reader_verify(const sm_reader *r);

/* ---------------------------------------------------------------- ordered access */

/** A position in key order.  A plain value: copy it freely, no cleanup needed.
 *  rank is the index of the current entry (0 = smallest); rank == count means
 *  "past the end".  The other fields are private. */
typedef struct sm_cursor {
    const sm_reader *reader;
    uint64_t rank;
    uint64_t offset; /* private: byte offset of the current record */
} sm_cursor;

typedef enum sm_bound {
    SM_GE = 0, /* first entry with key >= the given key (bisect_left) */
    SM_GT = 1  /* first entry with key >  the given key (bisect_right) */
} sm_bound;

/** Position @p c at rank @p rank (0 <= rank <= count).  O(1).
 *  @return 0, -ERANGE if rank > count, SM_ECORRUPT. */
SM_API int sm_seek_rank(const sm_reader *r, uint64_t rank, sm_cursor *c);

/** Position @p c at the first entry whose key is >= (SM_GE) or > (SM_GT) the given
 *  key, or past the end.  O(log n).  c->rank is then bisect_left/bisect_right.
 *  @return 0 or SM_ECORRUPT. */
SM_API int sm_seek_key(const sm_reader *r, const void *key, size_t klen, sm_bound bound,
                       sm_cursor *c);

/** The entry under the cursor.  @return 0, SM_NOTFOUND past the end, SM_ECORRUPT. */
SM_API int sm_cursor_get(const sm_cursor *c, sm_entry *out);

/** Step forward.  @return 0 if now on an entry, SM_NOTFOUND if now past the end
 *  (or already was), SM_ECORRUPT. */
SM_API int sm_cursor_next(sm_cursor *c);

/** The entry under the cursor, then a step forward: one pass over the record
 *  (sm_cursor_read_many, a batch at a time, is faster still).
 *  @return 0 (*out holds the entry that was under the cursor), SM_NOTFOUND if the
 *  cursor was past the end, SM_ECORRUPT. */
SM_API int sm_cursor_read(sm_cursor *c, sm_entry *out);

/** Up to @p max entries from the cursor on, into out[0 .. *nread), and the cursor
 *  moved past them: sm_cursor_read for a batch, the fastest way to walk a range
 *  (bulk export, a language binding's iterator).  It stops early only at the end
 *  of the map or before a record it cannot read; that error is returned by the
 *  next call, the one that can read nothing.
 *  @return 0 (*nread >= 1, or 0 if @p max is 0), SM_NOTFOUND if the cursor was past
 *  the end (*nread = 0), SM_ECORRUPT (*nread = 0; the cursor does not move). */
SM_API int sm_cursor_read_many(sm_cursor *c, sm_entry *out, size_t max, size_t *nread);

/** Step backward: O(2^sample_shift), as it walks from the previous sample past up
 *  to 2^sample_shift - 1 records (15 in what this library writes).  To walk
 *  backwards fast, seek to a rank some way below and read a batch forward with
 *  sm_cursor_read_many, as the Python binding does.
 *  @return 0 if moved, SM_NOTFOUND if already at rank 0 (the cursor does not move),
 *  SM_ECORRUPT. */
SM_API int sm_cursor_prev(sm_cursor *c);

/** The rank of @p key.  O(log n).  @return 0, SM_NOTFOUND, SM_ECORRUPT. */
SM_API int sm_rank(const sm_reader *r, const void *key, size_t klen, uint64_t *rank);

/** The ranks [*begin, *end) of the keys that start with @p prefix.  O(log n).
 *  @return 0 or SM_ECORRUPT. */
SM_API int sm_prefix_range(const sm_reader *r, const void *prefix, size_t plen,
                           uint64_t *begin, uint64_t *end);

/* ---------------------------------------------------------------- map sets
 *
 * A map set is one map split by key ranges into snapshots, the shards, named by a
 * manifest (docs/FORMAT.md §12): a directory holding a file MANIFEST and the shard files
 * (what a distributed build writes: each worker one shard, sm_set_write() last), or one
 * "packed" file holding the manifest and the shards (what sm_set_publish() puts in
 * shared memory, so that a set is published, replaced and attached under one name).
 *
 * sm_reader_open_file() of a set directory (or of its MANIFEST), and sm_reader_open_shm()
 * / sm_reader_open_mem() of a packed set, give a reader that every function above takes:
 * it answers as one snapshot of all the entries would (counts, lookups, cursors, ranks,
 * verification), a key routed to its shard by binary search over the shards' bounds.
 * Opening checks the manifest whole and each shard's header against it (size, count,
 * checksums, key kind) and its first and last keys against its bounds, in O(shards log n):
 * a missing, truncated, swapped or foreign shard is SM_ESHARD at open.
 * sm_reader_data() of a set is its manifest (the whole file, for a packed set), and
 * sm_reader_info() tells the set's entries, key kind, created and manifest checksum, as
 * size that of sm_reader_data(), with hash_seed 0 (sm_reader_shard() tells each shard). */

/** The shards of a set reader (1 for a snapshot's reader). */
SM_API uint64_t sm_reader_shard_count(const sm_reader *r);

/** Shard @p i of a set reader, as a snapshot reader that lives as long as @p r (for a
 *  snapshot's reader, itself for i = 0), and its lower bound in *bound, *bound_len (NULL
 *  and 0 for shard 0, which has none).  NULL if @p i is out of range. */
SM_API const sm_reader *sm_reader_shard(const sm_reader *r, uint64_t i, const void **bound,
                                        size_t *bound_len);

/** Why @p path does not open, in more detail: what sm_reader_open_file() returns, and if
 *  that is SM_ESHARD, the shard that failed in *shard and its own error in *shard_error
 *  (-ENOENT for a missing file, SM_ETRUNCATED, ..., or SM_ESHARD for a snapshot that is
 *  not the one the manifest names or holds keys outside its bounds). */
SM_API int sm_set_diagnose(const char *path, uint64_t *shard, int *shard_error);

/** Write the manifest of the set directory @p dir whose @p n shards are the snapshot files
 *  @p names[i] in it (plain file names), shard i holding the keys from @p bounds[i] up to
 *  bounds[i + 1] (bounds[0] is ignored: shard 0 has no lower bound; an int set's bounds are
 *  sm_key_int() bytes), and publish it as dir/MANIFEST atomically (temporary, fsync,
 *  rename, as sm_save()), after checking it as sm_reader_open_file() would: every shard
 *  must exist, be of the same key kind and hold only keys inside its bounds.  With SM_FORCE
 *  an existing manifest is replaced (its superseded word set; readers of it refresh).
 *  @return 0, -EINVAL (n is 0 or above 65536, or a bad name), SM_EKEYKIND, SM_EORDER
 *  (bounds not increasing), SM_ESHARD, -EEXIST, -errno. */
SM_API int sm_set_write(const char *dir, uint64_t n, const char *const *names, const sm_buf *bounds,
                        unsigned flags, unsigned mode);

/** Publish @p r (a set reader, or a snapshot's: a set of one shard) as the packed set
 *  @p name in @p dir (NULL: SM_DEFAULT_DIR), by the protocol of sm_publish(): one file, so
 *  the whole set appears, is replaced (SM_FORCE) and is attached at once, and readers of
 *  the set it replaces see their superseded word.  @return as sm_publish(), or -EINVAL for
 *  a layered map's reader (sm_reader_layer(); compact it first, or copy it into a builder). */
SM_API int sm_set_publish(const sm_reader *r, const char *dir, const char *name, unsigned flags,
                          unsigned mode);

/** sm_set_publish() into the file @p path, as sm_save() writes one. */
SM_API int sm_set_save(const sm_reader *r, const char *path, unsigned flags, unsigned mode);

/* ---------------------------------------------------------------- editing (delta layers)
 *
 * An edit of a published map or a snapshot file, published as a small delta over the current
 * version under the same name (docs/FORMAT.md section 13).  Editors of one name serialise: an
 * edit holds the name's lock (a flock of .sharedmap-edit.<file> beside it) from open to free.
 * A publisher that does not lock (sm_publish, sm_save) and replaces the name meanwhile makes
 * the commit fail with SM_ECONFLICT: an update is never lost silently.  Readers see base and
 * delta as one map through every function of the reader API. */
typedef struct sm_edit sm_edit;

#define SM_EDIT_NOWAIT 0x1u  /* another editor holds the name: -EWOULDBLOCK instead of waiting */
#define SM_EDIT_COMPACT 0x2u /* commit compacts: one plain snapshot, whatever the threshold */

typedef struct sm_edit_opts {
    double compact_ratio; /* compact when the delta has more entries than this times the base's
                             (< 0: never compact unless SM_EDIT_COMPACT) */
    unsigned flags;       /* SM_EDIT_NOWAIT, SM_EDIT_COMPACT */
    size_t memory_limit;  /* of the compaction's streaming writer (0: its default) */
    const char *temp_dir; /* where it spills (NULL: $TMPDIR, else /tmp) */
} sm_edit_opts;
#define SM_EDIT_OPTS_INIT {0.1, 0, 0, NULL}

/** Begin an edit of the map @p name in @p dir (NULL: SM_DEFAULT_DIR), waiting for another
 *  editor of the name unless SM_EDIT_NOWAIT.  @p opts may be NULL (SM_EDIT_OPTS_INIT).
 *  @return 0, -EWOULDBLOCK (NOWAIT and the name is being edited), -EINVAL (a map set), or
 *  an error of sm_reader_open_shm() (-ENOENT: nothing to edit). */
SM_API int sm_edit_open_shm(sm_edit **out, const char *dir, const char *name, const sm_edit_opts *opts);
/** Begin an edit of the snapshot file @p path (its lock and base live beside it). */
SM_API int sm_edit_open_file(sm_edit **out, const char *path, const sm_edit_opts *opts);
/** The version the edit began from (valid until sm_edit_free()). */
SM_API const sm_reader *sm_edit_reader(const sm_edit *e);
/** Look @p key up in the edited map: the pending changes first, then the version the edit
 *  began from.  @return 0, SM_NOTFOUND, or an error of sm_get(). */
SM_API int sm_edit_get(const sm_edit *e, const void *key, size_t klen, sm_value *out);
/** Insert or overwrite (the value is copied).  @return 0, SM_EKEYKIND, or a builder error. */
SM_API int sm_edit_put(sm_edit *e, sm_key_kind kind, const void *key, size_t klen, const sm_value *value);
/** Delete.  @return 0, SM_NOTFOUND (not in the edited map), or an error. */
SM_API int sm_edit_del(sm_edit *e, const void *key, size_t klen);
/** Entries of the edited map. */
SM_API uint64_t sm_edit_count(const sm_edit *e);
/** Pending changes (puts and deletions, one per key). */
SM_API size_t sm_edit_changes(const sm_edit *e);
/** The pending change of rank @p i (0 <= i < sm_edit_changes(), in key order): its key in
 *  out->key, and *deleted = 1 for a deletion, else 0 and its value in out->value.  Valid until
 *  the next put or del.  @return 0, SM_NOTFOUND (i out of range), -ENOMEM. */
SM_API int sm_edit_change_at(sm_edit *e, size_t i, sm_entry *out, int *deleted);
/** Publish the changes: a delta over the same base, or past compact_ratio (or with
 *  SM_EDIT_COMPACT) one plain snapshot merged by the streaming writer; *compacted (may be
 *  NULL) says which.  @return 0, SM_ECONFLICT (the name no longer holds the version the edit
 *  began from, checked at the start and again atomically at the rename; nothing was
 *  published), or a publish error.  The edit is spent either way:
 *  sm_edit_free() it. */
SM_API int sm_edit_commit(sm_edit *e, int *compacted);
/** Free the edit (an uncommitted one is discarded) and release the name's lock. */
SM_API void sm_edit_free(sm_edit *e);

/** What a layered map is made of (sm_reader_layer()). */
typedef struct sm_layer_info {
    uint64_t base_count;   /* entries of the base */
    uint64_t base_size;    /* bytes of the base's file */
    uint64_t delta_records; /* records of the delta: puts and deletions */
    uint64_t delta_size;   /* bytes of the delta inside the layer file */
    const char *base_file; /* the base's file name, beside the map's (valid as long as r) */
} sm_layer_info;

/** 1 and *out filled when @p r shows a base and a delta layer, else 0 (a plain snapshot or a
 *  map set). */
SM_API int sm_reader_layer(const sm_reader *r, sm_layer_info *out);

/* ---------------------------------------------------------------- housekeeping */

/** Called once per published map by sm_list().  @p err is 0 when @p info is valid,
 *  or the error that opening the header gave (info then has only size set, and
 *  that is 0 if the file could not even be opened).
 *  Return non-zero to stop the listing. */
typedef int (*sm_list_fn)(const char *name, const sm_info *info, int err, void *ctx);

/** List the maps published in @p dir (NULL: SM_DEFAULT_DIR), in no particular order.
 *  Reads only each header.  @return 0, the callback's non-zero value, or -errno. */
SM_API int sm_list(const char *dir, sm_list_fn fn, void *ctx);

/** Remove the debris of publishes whose writer died: temporary objects (regular
 *  files named .sharedmap-tmp.*) no live process holds.  Never touches a published
 *  map or bitmap, or a publish in progress: it unlinks a temporary only while it holds
 *  its lock and the name still holds the file it locked (a temporary it opened just
 *  before its writer installed it is the public map by then), and a writer whose named
 *  temporary (on a filesystem without O_TMPFILE) was taken in the moment before it
 *  locked it notices and starts again.  A snapshot or bitmap that a publish with
 *  SM_FORCE, sm_unpublish() or sm_bitmap_remove() has just taken out of its public
 *  name is unlocked too, and may be removed here first: like them, gc sets the
 *  superseded word of every snapshot and bitmap before it unlinks it, so its readers
 *  always learn that it is gone, and it leaves one it may not write (another user's)
 *  for its owner's gc.
 *  Delta layers (sm_edit_*): also removes the bases (.sharedmap-base.*) that no layer
 *  names any more, and the edit locks (.sharedmap-edit.*) of names that are gone, each
 *  judged under that name's edit lock and skipped while an editor holds it.
 *  @p removed (may be NULL) receives the count of temporaries and bases.  @return 0 or
 *  -errno. */
SM_API int sm_gc(const char *dir, unsigned *removed);

/* ---------------------------------------------------------------- hashing */

/** XXH64 of @p len bytes with @p seed: the hash function of the format (see
 *  docs/FORMAT.md), exported for independent readers and tests. */
SM_API uint64_t sm_hash64(const void *data, size_t len, uint64_t seed);

/* ---------------------------------------------------------------- shared bitmaps */

/* A shared bitmap is a bitset of `size` bits in one file, DIR "/" SM_BITMAP_PREFIX NAME
 * (DIR = SM_DEFAULT_DIR, a tmpfs, unless given), that every process attached to it sets and
 * reads in place.  Unlike a map it is mutable, by any number of processes at once.  The
 * file format and the concurrency protocol are in docs/FORMAT.md §11.
 *
 *   - Sizes count bits and are rounded up to a whole byte (a size of 100 is 104).  Indexes
 *     are uint64_t.  get() of an index at or past the size is 0: every bit past the end is
 *     clear; setting one is -ERANGE.
 *   - Every operation is one atomic instruction on the bit's 64-bit word (fetch-or,
 *     fetch-and, load), after one atomic load of the size: no update is ever lost, between
 *     threads or processes, and sm_bitmap_test_and_set() gives a clear bit to exactly one
 *     caller.  All of get/set/test_and_set/test_and_clear are linearizable, even while
 *     other processes resize (see "Resizing" below and FORMAT.md §11.6).
 *   - Resizing is in place: every handle sees the new size at its next operation.  A
 *     handle reserves address space for max_bits (fixed at creation) once and maps the
 *     file into the start of it as it grows, so the bits never move in memory.  The file
 *     only grows; shrinking is logical.
 *   - Threads: a handle may be used by any number of threads at once, resize included;
 *     only sm_bitmap_close() must not overlap other calls on it.  A child of fork() may
 *     use the handles it inherited (the first lock it takes reopens the file for a lock of
 *     its own, through /proc/self/fd), provided no thread of the parent was inside a call
 *     on that handle at the fork.
 *   - A bitmap file is untrusted like a snapshot: attaching checks its header in O(1)
 *     (FORMAT.md §11.4) and gives SM_E* errors, never a crash.  The size and capacity words
 *     are checked again whenever a handle has to map more of the file.  As with maps, a
 *     process that may write the file can still truncate it under the others (SIGBUS);
 *     this library never shrinks it.
 *
 * Errors of the header checks (shared with snapshots; the messages speak of snapshots):
 * SM_EBADMAGIC (not a bitmap, e.g. a map or random bytes), SM_EENDIAN, SM_EVERSION,
 * SM_EFEATURE, SM_EHEADER (checksum, reserved bytes or sizes that disagree),
 * SM_ETRUNCATED (shorter than its header or its capacity), SM_ENOTSNAPSHOT (not a regular
 * file).
 */

/** A handle on one attached shared bitmap. */
typedef struct sm_bitmap sm_bitmap;

/** A bitmap named NAME is the file DIR "/" SM_BITMAP_PREFIX NAME: a map and a bitmap of
 *  the same name do not collide. */
#define SM_BITMAP_PREFIX "sharedbitmap."
/** The bitmap format version this library writes and the only one it reads. */
#define SM_BITMAP_FORMAT_VERSION 1
/** The largest max_bits the format allows: 2^43 bits (1 TiB of bits). */
#define SM_BITMAP_MAX_BITS (UINT64_C(1) << 43)
/** max_bits of a bitmap created with max_bits 0 (unless its size is larger): 2^36 bits, so
 *  each handle reserves 8 GiB of address space (and no memory). */
#define SM_BITMAP_DEFAULT_MAX_BITS (UINT64_C(1) << 36)

/* flags for sm_bitmap_attach */
#define SM_BITMAP_RDONLY 0x2u /* map read-only (no write access needed); changes are -EBADF */

/** Create the bitmap @p name in @p dir (NULL: SM_DEFAULT_DIR) with @p size bits, all clear,
 *  and attach to it (*out; sm_bitmap_close() it).
 *  @p max_bits is the size the bitmap can ever be resized to, rounded up to a multiple of
 *  64; 0 means SM_BITMAP_DEFAULT_MAX_BITS, or the size if that is larger.  Each handle
 *  reserves max_bits / 8 bytes of address space (PROT_NONE: no memory, no commit charge).
 *  The file is written completely under a temporary (or anonymous) name, locked, with its
 *  space reserved (a full filesystem is -ENOSPC here, never a SIGBUS later) and mode
 *  @p mode exactly (0: SM_DEFAULT_MODE; the umask does not apply), then renamed to its name
 *  in one atomic step, by the same protocol as sm_publish(): a creator killed at any
 *  moment leaves either nothing or debris that sm_gc() removes.  Without SM_FORCE an
 *  existing bitmap gives -EEXIST and is left alone; with it, it is replaced atomically:
 *  handles attached to the old one keep using it (now nameless; sm_bitmap_superseded()
 *  says 1), new attaches get the new one.  Only a regular file is ever replaced.
 *  @return 0, SM_ENAME, -EINVAL (a flag other than SM_FORCE, or @p mode with bits outside
 *          0777), -EFBIG (size > max_bits, or either > SM_BITMAP_MAX_BITS), -EEXIST,
 *          -EISDIR / SM_ESYMLINK / SM_ENOTSNAPSHOT (with SM_FORCE: a directory, symlink or
 *          other non-regular file under the name, left as it is), -ENOSPC, -EACCES /
 *          -EPERM, -ENOMEM (no address space for the reservation), other -errno. */
SM_API int sm_bitmap_create(sm_bitmap **out, const char *dir, const char *name, uint64_t size,
                            uint64_t max_bits, unsigned flags, unsigned mode);

/** Attach to the bitmap @p name in @p dir (NULL: SM_DEFAULT_DIR), read-write, or read-only
 *  with SM_BITMAP_RDONLY.  The last path component is never followed as a symlink.
 *  @return 0, SM_ENAME, -EINVAL (unknown flags), -ENOENT, -EACCES, -ELOOP (a symlink),
 *          one of the header errors above, -ENOMEM, other -errno. */
SM_API int sm_bitmap_attach(sm_bitmap **out, const char *dir, const char *name, unsigned flags);

/** Detach: unmap and close.  NULL is a no-op.  Pointers from sm_bitmap_bytes() become
 *  invalid.  The bitmap itself stays until sm_bitmap_remove(). */
SM_API void sm_bitmap_close(sm_bitmap *b);

/** Remove the bitmap @p name from @p dir (NULL: SM_DEFAULT_DIR), as sm_unpublish() removes
 *  a map.  Handles attached to it keep working on it (sm_bitmap_superseded() says 1); new
 *  attaches fail with -ENOENT.
 *  @return 0, -ENOENT if there was no such bitmap, SM_ENAME, -EISDIR / SM_ESYMLINK /
 *          SM_ENOTSNAPSHOT (not a regular file: left as it is), other -errno. */
SM_API int sm_bitmap_remove(const char *dir, const char *name);

/** The size in bits (a multiple of 8), as of now: one atomic load. */
SM_API uint64_t sm_bitmap_size(const sm_bitmap *b);

/** The largest size the bitmap can be resized to (fixed at creation; a multiple of 64). */
SM_API uint64_t sm_bitmap_max_bits(const sm_bitmap *b);

/** Bit @p index: 1 if set, 0 if clear or at or past the size.
 *  @return 1, 0, or an error if more of the file had to be mapped and could not be:
 *          SM_ECORRUPT / SM_ETRUNCATED (a header made inconsistent by someone who writes
 *          the file), -ENOMEM. */
SM_API int sm_bitmap_get(sm_bitmap *b, uint64_t index);

/** Set (@p value non-zero) or clear bit @p index.
 *  @return 0, -ERANGE if index >= size, -EBADF on a read-only handle, or an error of
 *          mapping as for sm_bitmap_get(). */
SM_API int sm_bitmap_set(sm_bitmap *b, uint64_t index, int value);

/** Set bit @p index and return what it was: 0 means this call set it, and across every
 *  thread and process exactly one caller gets 0 for a clear bit (claiming work once).
 *  @return 0 or 1, or the errors of sm_bitmap_set(). */
SM_API int sm_bitmap_test_and_set(sm_bitmap *b, uint64_t index);

/** Clear bit @p index and return what it was (1: this call cleared it).
 *  @return 0 or 1, or the errors of sm_bitmap_set(). */
SM_API int sm_bitmap_test_and_clear(sm_bitmap *b, uint64_t index);

/** The number of set bits below the size, in *count.  O(size / 64).  Each word is read once
 *  atomically, but not all at one instant: with concurrent changes the result is some value
 *  between the counts before and after them.  @return 0 or a mapping error. */
SM_API int sm_bitmap_count(sm_bitmap *b, uint64_t *count);

/** The first set bit at or after @p from and below the size, in *index.  Iterate with
 *  from = *index + 1.  Like count, a walk is not a snapshot: it sees bits changed under it
 *  or not.  @return 0, SM_NOTFOUND if there is none, or a mapping error. */
SM_API int sm_bitmap_next_set(sm_bitmap *b, uint64_t from, uint64_t *index);

/** Clear every bit, word by word (not one atomic step: a concurrent set may survive).
 *  @return 0, -EBADF on a read-only handle, or a mapping error. */
SM_API int sm_bitmap_clear_all(sm_bitmap *b);

/** Resize to @p size bits (rounded up to a multiple of 8).  Growing reserves the file space
 *  first (posix_fallocate: -ENOSPC here, never a SIGBUS later) and reveals bits that read
 *  clear; shrinking is logical: the bits past the new end read clear and are cleared for
 *  real before a later grow reveals them again.  Resizes from any number of processes are
 *  serialised (flock on the file): the last one to run decides the size, and every handle
 *  sees it at its next operation.  Calls that touch a bit while a resize is clearing bits
 *  or moving the size may wait for it to finish.
 *  @return 0, -EFBIG (size > sm_bitmap_max_bits()), -ENOSPC, -EBADF (read-only handle),
 *          SM_EHEADER / SM_ETRUNCATED (an inconsistent header), -ENOMEM, other -errno. */
SM_API int sm_bitmap_resize(sm_bitmap *b, uint64_t size);

/** The bits as bytes, for a zero-copy buffer: *data is the first byte of bit 0, *len =
 *  size / 8 as of now.  Bit i is bit (i % 8), counted from the least significant, of byte
 *  i / 8 (numpy.unpackbits(a, bitorder='little')[i] == bit i; equally, bit i % 64 of the
 *  little-endian 64-bit word i / 64).  The pointer is owned by the handle and valid until
 *  sm_bitmap_close(), whatever resizes happen (a shrink does not unmap anything); the bytes
 *  change under it as processes set bits.  Read only: writing through it would lose other
 *  processes' updates of the same byte.  @return 0 or a mapping error. */
SM_API int sm_bitmap_bytes(sm_bitmap *b, const void **data, size_t *len);

/** Whether this bitmap was replaced (SM_FORCE) or removed under its name since (one atomic
 *  load).  A hint, as for maps: 1 means attach to the name again for the current one. */
SM_API int sm_bitmap_superseded(const sm_bitmap *b);

/** What a handle or a listing knows about a bitmap. */
typedef struct sm_bitmap_info {
    uint64_t size;       /* bits */
    uint64_t capacity;   /* bits the file has room for now (>= size) */
    uint64_t max_bits;   /* fixed at creation */
    uint64_t file_size;  /* bytes */
    uint64_t created_ns; /* ns since the Unix epoch */
    uint64_t resizes;    /* resizes since creation that changed the size (or were cut short) */
    uint64_t dev, ino;   /* identity of the file */
    unsigned format_version;
    int superseded;
} sm_bitmap_info;

/** Fill *out.  @return 0 or -errno (from fstat). */
SM_API int sm_bitmap_stat(sm_bitmap *b, sm_bitmap_info *out);

/** Called once per bitmap by sm_bitmap_list().  @p err is 0 when @p info is valid, or the
 *  error its header gave (info then has at most file_size, dev and ino set).  Return
 *  non-zero to stop the listing. */
typedef int (*sm_bitmap_list_fn)(const char *name, const sm_bitmap_info *info, int err, void *ctx);

/** List the bitmaps in @p dir (NULL: SM_DEFAULT_DIR), in no particular order, the way
 *  sm_list() lists maps (it does not list bitmaps; a tool shows both by calling both).
 *  Reads only each header.  @return 0, the callback's non-zero value, or -errno. */
SM_API int sm_bitmap_list(const char *dir, sm_bitmap_list_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* SHAREDMAP_H */
