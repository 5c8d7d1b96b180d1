/* sqlite.c — the embedded metadata backend: every record of docs/metadata.md
 * in one SQLite file (WAL mode, synchronous=FULL), safe across threads and
 * processes.
 *
 * One connection per meta handle, serialised by the handle's mutex (a
 * transaction spans several statements, so SQLite's own per-call mutex would
 * not be enough). Read-modify-write operations run in BEGIN IMMEDIATE
 * transactions, which take SQLite's single write lock up front, so a CAS is
 * atomic against every other connection, in this process or another.
 *
 * Every row read back is checked (type and range): a bad one is WP_ECORRUPT. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/limits.h"
#include "meta/meta.h"

/* Schema version stored under kv 'version' (docs/metadata.md). */
#define META_SQLITE_SCHEMA_VERSION 1
/* PRAGMA application_id marking a Woodpecker metadata file ("WPMD"). */
#define META_SQLITE_APP_ID 0x57504d44
/* How long a call waits for another connection's write lock. */
#define META_SQLITE_BUSY_TIMEOUT_MS 5000
/* Bound on the rows one list call returns (log_list, seg_list, reader_list,
 * node_list, claim_list). */
#define META_LIST_ROWS_MAX (16 * 1024 * 1024)
/* Bound on a lease's time to live (one day). */
#define META_LEASE_TTL_MS_MAX (24LL * 3600 * 1000)

typedef struct {
    meta base; /* first: a meta * is a meta_sqlite * */
    pthread_mutex_t mu;
    sqlite3 *db;
    char path[WP_PATH_MAX + 1];
} meta_sqlite;

static meta_sqlite *ms(meta *m) { return (meta_sqlite *)m; }

/* ---- errors and statements --------------------------------------------- */

static int sql_err(meta_sqlite *m, int src, const char *op)
{
    int rc;
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        rc = WP_EUNAVAILABLE;
        break;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        rc = WP_ECORRUPT;
        break;
    case SQLITE_FULL:
        rc = WP_ENOSPC;
        break;
    case SQLITE_NOMEM:
        rc = WP_ENOMEM;
        break;
    default:
        rc = WP_EIO;
        break;
    }
    return wp__err(rc, "meta sqlite %s (%s): %s", op, m->path,
                   m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(src));
}

static int corrupt(meta_sqlite *m, const char *op, const char *what)
{
    return wp__err(WP_ECORRUPT, "meta sqlite %s (%s): corrupt record: %s", op, m->path, what);
}

/* Prepares sql and binds its parameters from fmt: 'i' int64_t, 's' string,
 * 'b' blob (two arguments: const void *, size_t). */
static int vprep(meta_sqlite *m, const char *op, sqlite3_stmt **st, const char *sql,
                 const char *fmt, va_list ap)
{
    int src = sqlite3_prepare_v2(m->db, sql, -1, st, NULL);
    if (src != SQLITE_OK)
        return sql_err(m, src, op);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 'i') {
            src = sqlite3_bind_int64(*st, i + 1, va_arg(ap, int64_t));
        } else if (fmt[i] == 'b') {
            const void *p = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            src = sqlite3_bind_blob(*st, i + 1, p, (int)len, SQLITE_TRANSIENT);
        } else {
            src = sqlite3_bind_text(*st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        }
        if (src != SQLITE_OK) {
            int rc = sql_err(m, src, op);
            sqlite3_finalize(*st);
            *st = NULL;
            return rc;
        }
    }
    return 0;
}

static int prep(meta_sqlite *m, const char *op, sqlite3_stmt **st, const char *sql,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vprep(m, op, st, sql, fmt, ap);
    va_end(ap);
    return rc;
}

/* Runs a statement that returns no rows; *changes gets the rows it touched. */
static int exec(meta_sqlite *m, const char *op, int *changes, const char *sql,
                const char *fmt, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    va_start(ap, fmt);
    int rc = vprep(m, op, &st, sql, fmt, ap);
    va_end(ap);
    if (rc < 0)
        return rc;
    int src = sqlite3_step(st);
    if (src != SQLITE_DONE && src != SQLITE_ROW)
        rc = sql_err(m, src, op);
    else if (changes)
        *changes = sqlite3_changes(m->db);
    sqlite3_finalize(st);
    return rc;
}

/* Steps a prepared statement: 1 for a row, 0 when done, <0 on error. */
static int step(meta_sqlite *m, const char *op, sqlite3_stmt *st)
{
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        return 1;
    if (src == SQLITE_DONE)
        return 0;
    return sql_err(m, src, op);
}

static int col_i64(meta_sqlite *m, const char *op, sqlite3_stmt *st, int i, int64_t min,
                   int64_t *out)
{
    if (sqlite3_column_type(st, i) != SQLITE_INTEGER)
        return corrupt(m, op, sqlite3_column_name(st, i));
    int64_t v = sqlite3_column_int64(st, i);
    if (v < min)
        return corrupt(m, op, sqlite3_column_name(st, i));
    *out = v;
    return 0;
}

/* Copies a TEXT column of 1..max bytes into buf[max + 1]. */
static int col_name(meta_sqlite *m, const char *op, sqlite3_stmt *st, int i, size_t max, char *buf)
{
    if (sqlite3_column_type(st, i) != SQLITE_TEXT)
        return corrupt(m, op, sqlite3_column_name(st, i));
    const unsigned char *s = sqlite3_column_text(st, i);
    int len = sqlite3_column_bytes(st, i);
    if (!s)
        return wp__err(WP_ENOMEM, "meta sqlite %s: out of memory", op);
    if (len < 1 || (size_t)len > max || memchr(s, '\0', (size_t)len))
        return corrupt(m, op, sqlite3_column_name(st, i));
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    return 0;
}

/* ---- transactions ------------------------------------------------------ */

static int tx_begin(meta_sqlite *m, const char *op)
{
    return exec(m, op, NULL, "BEGIN IMMEDIATE", "");
}

/* Commits on rc == 0, else rolls back; returns rc or the commit's error. */
static int tx_end(meta_sqlite *m, const char *op, int rc)
{
    if (rc == 0) {
        rc = exec(m, op, NULL, "COMMIT", "");
        if (rc == 0)
            return 0;
    }
    if (!sqlite3_get_autocommit(m->db))
        sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Increments the kv counter `key` and returns its new value. */
static int gen_next(meta_sqlite *m, const char *op, const char *key, int64_t *out)
{
    int changes = 0;
    int rc = exec(m, op, &changes, "UPDATE kv SET value = value + 1 WHERE key = ?", "s", key);
    if (rc < 0)
        return rc;
    if (changes != 1)
        return corrupt(m, op, key);
    sqlite3_stmt *st;
    rc = prep(m, op, &st, "SELECT value FROM kv WHERE key = ?", "s", key);
    if (rc < 0)
        return rc;
    rc = step(m, op, st);
    if (rc == 1)
        rc = col_i64(m, op, st, 0, 1, out);
    else if (rc == 0)
        rc = corrupt(m, op, key);
    sqlite3_finalize(st);
    return rc;
}

/* The next store-wide revision: every write gets one. */
static int rev_next(meta_sqlite *m, const char *op, int64_t *rev)
{
    return gen_next(m, op, "revision", rev);
}

/* ---- schema ------------------------------------------------------------ */

/* The nodes table (docs/metadata.md §4.2): part of schema version 1 from
 * the start, and created if missing when a version-1 file is opened, so a
 * file that lacks it still works. value is the node value of §5.2. */
#define NODES_TABLE_SQL                                                                  \
    "CREATE TABLE IF NOT EXISTS nodes ("                                                 \
    "  node_id TEXT PRIMARY KEY NOT NULL,"                                               \
    "  value BLOB NOT NULL,"                                                             \
    "  lease_id INTEGER NOT NULL,"                                                       \
    "  rev INTEGER NOT NULL)"

/* The settings table (docs/metadata.md §3.5, §4.2): store-wide settings
 * such as `conditionwrite`; created if missing at every open, like nodes,
 * so files made before it existed keep working. */
#define SETTINGS_TABLE_SQL                                                               \
    "CREATE TABLE IF NOT EXISTS settings ("                                              \
    "  name TEXT PRIMARY KEY NOT NULL,"                                                  \
    "  value TEXT NOT NULL,"                                                             \
    "  rev INTEGER NOT NULL)"

/* The claims table (docs/metadata.md §3.6, §4.2): upload claims, created
 * if missing at every open, like nodes and settings. value is the claim
 * value of §5.2 (tag zeros); lease_id repeats the value's for the joins. */
#define CLAIMS_TABLE_SQL                                                                 \
    "CREATE TABLE IF NOT EXISTS claims ("                                                \
    "  log_id INTEGER NOT NULL,"                                                         \
    "  seg_id INTEGER NOT NULL,"                                                         \
    "  value BLOB NOT NULL,"                                                             \
    "  lease_id INTEGER NOT NULL,"                                                       \
    "  rev INTEGER NOT NULL,"                                                            \
    "  PRIMARY KEY (log_id, seg_id)) WITHOUT ROWID"
#define CLAIMS_INDEX_SQL "CREATE INDEX IF NOT EXISTS claims_lease ON claims (lease_id)"

/* The records table (docs/metadata.md §3.7, §4.2): generic records,
 * created if missing at every open, like nodes, settings and claims.
 * A rowid table: values of up to 64 KiB do not suit WITHOUT ROWID. */
#define RECORDS_TABLE_SQL                                                                \
    "CREATE TABLE IF NOT EXISTS records ("                                               \
    "  key TEXT PRIMARY KEY NOT NULL,"                                                   \
    "  value BLOB NOT NULL,"                                                             \
    "  lease_id INTEGER NOT NULL,"                                                       \
    "  rev INTEGER NOT NULL,"                                                            \
    "  create_rev INTEGER NOT NULL)"
#define RECORDS_INDEX_SQL "CREATE INDEX IF NOT EXISTS records_lease ON records (lease_id)"

static const char schema_sql[] =
    "CREATE TABLE kv ("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value NOT NULL);"
    "CREATE TABLE logs ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  log_id INTEGER NOT NULL UNIQUE,"
    "  epoch INTEGER NOT NULL,"
    "  trunc_seg INTEGER NOT NULL,"
    "  trunc_entry INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  rev INTEGER NOT NULL);"
    "CREATE TABLE segments ("
    "  log_id INTEGER NOT NULL,"
    "  seg_id INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  last_entry_id INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  epoch INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  completed_ms INTEGER NOT NULL,"
    "  rev INTEGER NOT NULL,"
    "  truncated_ms INTEGER NOT NULL,"
    "  placement TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (log_id, seg_id)) WITHOUT ROWID;"
    "CREATE TABLE leases ("
    "  lease_id INTEGER PRIMARY KEY NOT NULL,"
    "  ttl_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL);"
    "CREATE INDEX leases_expiry ON leases (expires_ms);"
    "CREATE TABLE readers ("
    "  log_id INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  seg_id INTEGER NOT NULL,"
    "  entry_id INTEGER NOT NULL,"
    "  lease_id INTEGER NOT NULL,"
    "  rev INTEGER NOT NULL,"
    "  PRIMARY KEY (log_id, name)) WITHOUT ROWID;"
    "CREATE INDEX readers_lease ON readers (lease_id);"
    NODES_TABLE_SQL ";"
    SETTINGS_TABLE_SQL ";"
    CLAIMS_TABLE_SQL ";"
    CLAIMS_INDEX_SQL ";"
    RECORDS_TABLE_SQL ";"
    RECORDS_INDEX_SQL ";"
    "INSERT INTO kv (key, value) VALUES"
    "  ('version', 1),"
    "  ('instance', lower(hex(randomblob(16)))),"
    "  ('logidgen', 0),"
    "  ('leaseidgen', 0),"
    "  ('revision', 1);"
    "PRAGMA application_id = 1464880452;";
_Static_assert(META_SQLITE_SCHEMA_VERSION == 1, "schema_sql writes version 1");
_Static_assert(META_SQLITE_APP_ID == 1464880452, "schema_sql writes the application id");

static int query_i64(meta_sqlite *m, const char *op, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = prep(m, op, &st, sql, "");
    if (rc < 0)
        return rc;
    rc = step(m, op, st);
    if (rc == 1)
        rc = col_i64(m, op, st, 0, INT64_MIN, out);
    else if (rc == 0)
        rc = wp__err(WP_EIO, "meta sqlite %s (%s): %s returned nothing", op, m->path, sql);
    sqlite3_finalize(st);
    return rc;
}

/* Checks an existing store: our application id, schema version, instance. */
static int schema_check(meta_sqlite *m)
{
    static const char op[] = "open";
    int64_t app_id = 0, version = 0;
    int rc = query_i64(m, op, "PRAGMA application_id", &app_id);
    if (rc < 0)
        return rc;
    if (app_id != META_SQLITE_APP_ID)
        return wp__err(WP_EINVAL, "meta sqlite open (%s): not a woodpecker metadata store "
                                  "(application_id %lld)", m->path, (long long)app_id);
    sqlite3_stmt *st;
    rc = prep(m, op, &st, "SELECT value FROM kv WHERE key = 'version'", "");
    if (rc < 0)
        return rc;
    rc = step(m, op, st);
    if (rc == 1)
        rc = col_i64(m, op, st, 0, INT64_MIN, &version);
    else if (rc == 0)
        rc = corrupt(m, op, "no 'version' key");
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    if (version != META_SQLITE_SCHEMA_VERSION)
        return wp__err(WP_EINVAL, "meta sqlite open (%s): schema version %lld, this build "
                                  "supports version %d", m->path, (long long)version,
                       META_SQLITE_SCHEMA_VERSION);
    int64_t n = 0;
    rc = query_i64(m, op,
                    "SELECT count(*) FROM kv WHERE key IN ('instance', 'logidgen', "
                    "'leaseidgen', 'revision')", &n);
    if (rc == 0 && n != 4)
        rc = corrupt(m, op, "kv keys missing");
    return rc;
}

/* Creates the schema in an empty file, or checks an existing one. */
static int schema_init(meta_sqlite *m)
{
    static const char op[] = "open";
    int rc = tx_begin(m, op);
    if (rc < 0)
        return rc;
    int64_t n = 0;
    rc = query_i64(m, op, "SELECT count(*) FROM sqlite_master", &n);
    if (rc == 0 && n == 0) {
        int src = sqlite3_exec(m->db, schema_sql, NULL, NULL, NULL);
        if (src != SQLITE_OK)
            rc = sql_err(m, src, op);
    } else if (rc == 0 && (rc = schema_check(m)) == 0) {
        rc = exec(m, op, NULL, NODES_TABLE_SQL, "");
        if (rc == 0)
            rc = exec(m, op, NULL, SETTINGS_TABLE_SQL, "");
        if (rc == 0)
            rc = exec(m, op, NULL, CLAIMS_TABLE_SQL, "");
        if (rc == 0)
            rc = exec(m, op, NULL, CLAIMS_INDEX_SQL, "");
        if (rc == 0)
            rc = exec(m, op, NULL, RECORDS_TABLE_SQL, "");
        if (rc == 0)
            rc = exec(m, op, NULL, RECORDS_INDEX_SQL, "");
        /* Segment placements (docs/metadata.md §4.2): a column added to
         * files made before it, read as '' in their old rows. */
        if (rc == 0 && (rc = query_i64(m, op, "SELECT count(*) FROM pragma_table_info('segments') "
                                              "WHERE name = 'placement'", &n)) == 0 && n == 0)
            rc = exec(m, op, NULL, "ALTER TABLE segments ADD COLUMN placement TEXT NOT NULL "
                                   "DEFAULT ''", "");
    }
    return tx_end(m, op, rc);
}

static int configure(meta_sqlite *m)
{
    static const char op[] = "open";
    sqlite3_extended_result_codes(m->db, 1);
    int src = sqlite3_busy_timeout(m->db, META_SQLITE_BUSY_TIMEOUT_MS);
    if (src != SQLITE_OK)
        return sql_err(m, src, op);
    if (sqlite3_db_readonly(m->db, "main") == 1)
        return wp__err(WP_EIO, "meta sqlite open (%s): file is read-only", m->path);
    sqlite3_stmt *st;
    int rc;
    /* Switching a new file to WAL takes an exclusive lock, and SQLite does
     * not wait for it: two processes opening a store that does not exist
     * yet would see "database is locked". Retried within the busy timeout. */
    for (int64_t due = wp__now_ns() + META_SQLITE_BUSY_TIMEOUT_MS * 1000000LL;;) {
        rc = prep(m, op, &st, "PRAGMA journal_mode = WAL", "");
        if (rc < 0)
            return rc;
        rc = step(m, op, st);
        if (rc != WP_EUNAVAILABLE || wp__now_ns() >= due)
            break;
        sqlite3_finalize(st);
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc == 1) {
        const unsigned char *mode = sqlite3_column_text(st, 0);
        if (!mode || strcmp((const char *)mode, "wal") != 0)
            rc = wp__err(WP_EIO, "meta sqlite open (%s): cannot enable WAL (journal mode %s)",
                         m->path, mode ? (const char *)mode : "?");
        else
            rc = 0;
    } else if (rc == 0) {
        rc = wp__err(WP_EIO, "meta sqlite open (%s): journal_mode returned nothing", m->path);
    }
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    rc = exec(m, op, NULL, "PRAGMA synchronous = FULL", "");
    if (rc < 0)
        return rc;
    return schema_init(m);
}

/* ---- logs -------------------------------------------------------------- */

#define LOG_COLS "name, log_id, epoch, trunc_seg, trunc_entry, created_ms, rev"

static int row_log(meta_sqlite *m, const char *op, sqlite3_stmt *st, meta_log *l)
{
    int rc;
    if ((rc = col_name(m, op, st, 0, WP_LOG_NAME_MAX, l->name)) < 0 ||
        (rc = col_i64(m, op, st, 1, 1, &l->log_id)) < 0 ||
        (rc = col_i64(m, op, st, 2, 0, &l->epoch)) < 0 ||
        (rc = col_i64(m, op, st, 3, -1, &l->trunc_seg)) < 0 ||
        (rc = col_i64(m, op, st, 4, -1, &l->trunc_entry)) < 0 ||
        (rc = col_i64(m, op, st, 5, INT64_MIN, &l->created_ms)) < 0 ||
        (rc = col_i64(m, op, st, 6, 1, &l->rev)) < 0)
        return rc;
    return 0;
}

static int name_check(const char *op, const char *name, size_t max)
{
    if (!name || !*name)
        return wp__err(WP_EINVAL, "meta %s: empty name", op);
    if (strnlen(name, max + 1) > max)
        return wp__err(WP_EINVAL, "meta %s: name longer than %zu bytes", op, max);
    return 0;
}

/* Loads a log by name inside the current transaction (or autocommit). */
static int log_load(meta_sqlite *m, const char *op, const char *name, meta_log *out)
{
    sqlite3_stmt *st;
    int rc = prep(m, op, &st, "SELECT " LOG_COLS " FROM logs WHERE name = ?", "s", name);
    if (rc < 0)
        return rc;
    rc = step(m, op, st);
    if (rc == 1)
        rc = row_log(m, op, st, out);
    else if (rc == 0)
        rc = wp__err(WP_ENOENT, "meta %s: no log '%s'", op, name);
    sqlite3_finalize(st);
    return rc;
}

static int sq_log_create(meta *mm, const char *name, int64_t now_ms, meta_log *out)
{
    static const char op[] = "log_create";
    meta_sqlite *m = ms(mm);
    int rc = name_check(op, name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    meta_log l;
    memset(&l, 0, sizeof l);
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    rc = log_load(m, op, name, &l);
    if (rc == 0) {
        rc = wp__err(WP_EEXIST, "meta log_create: log '%s' exists", name);
        goto out_tx;
    }
    if (rc != WP_ENOENT)
        goto out_tx;
    memset(&l, 0, sizeof l);
    strcpy(l.name, name); /* length checked above */
    l.epoch = 0;
    l.trunc_seg = l.trunc_entry = -1;
    l.created_ms = now_ms;
    if ((rc = gen_next(m, op, "logidgen", &l.log_id)) < 0 || (rc = rev_next(m, op, &l.rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL, "INSERT INTO logs (" LOG_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?)",
              "siiiiii", l.name, l.log_id, l.epoch, l.trunc_seg, l.trunc_entry, l.created_ms,
              l.rev);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0 && out)
        *out = l;
    return rc;
}

static int sq_log_get(meta *mm, const char *name, meta_log *out)
{
    static const char op[] = "log_get";
    meta_sqlite *m = ms(mm);
    int rc = name_check(op, name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&m->mu);
    rc = log_load(m, op, name, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int rev_conflict(const char *op, const char *what, int64_t want, int64_t have)
{
    return wp__err(WP_ECONFLICT, "meta %s %s: expected rev %lld, stored rev %lld", op, what,
                   (long long)want, (long long)have);
}

static int sq_log_update(meta *mm, meta_log *l)
{
    static const char op[] = "log_update";
    meta_sqlite *m = ms(mm);
    int rc = name_check(op, l->name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    if (l->epoch < 0 || l->trunc_seg < -1 || l->trunc_entry < -1)
        return wp__err(WP_EINVAL, "meta log_update %s: bad epoch or truncation point", l->name);
    meta_log cur;
    int64_t rev = 0;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = log_load(m, op, l->name, &cur)) < 0)
        goto out_tx;
    if (cur.rev != l->rev) {
        rc = rev_conflict(op, l->name, l->rev, cur.rev);
        goto out_tx;
    }
    if ((rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL,
              "UPDATE logs SET epoch = ?, trunc_seg = ?, trunc_entry = ?, rev = ? WHERE name = ?",
              "iiiis", l->epoch, l->trunc_seg, l->trunc_entry, rev, l->name);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        l->rev = rev;
    return rc;
}

static int sq_log_delete(meta *mm, const char *name, int64_t expect_rev)
{
    static const char op[] = "log_delete";
    meta_sqlite *m = ms(mm);
    int rc = name_check(op, name, WP_LOG_NAME_MAX);
    if (rc < 0)
        return rc;
    meta_log cur;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = log_load(m, op, name, &cur)) < 0)
        goto out_tx;
    if (expect_rev != 0 && cur.rev != expect_rev) {
        rc = rev_conflict(op, name, expect_rev, cur.rev);
        goto out_tx;
    }
    int64_t rev;
    if ((rc = rev_next(m, op, &rev)) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM segments WHERE log_id = ?", "i", cur.log_id)) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM readers WHERE log_id = ?", "i", cur.log_id)) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM claims WHERE log_id = ?", "i", cur.log_id)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL, "DELETE FROM logs WHERE name = ?", "s", name);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void wp_free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Grows *arr (of elem-byte items, capacity *cap) to hold at least need items. */
static int grow(void **arr, size_t *cap, size_t need, size_t elem, const char *op)
{
    if (need <= *cap)
        return 0;
    if (need > META_LIST_ROWS_MAX)
        return wp__err(WP_ETOOBIG, "meta %s: more than %d rows", op, META_LIST_ROWS_MAX);
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return wp__err(WP_ENOMEM, "meta %s: out of memory", op);
    *arr = p;
    *cap = ncap;
    return 0;
}

static int sq_log_list(meta *mm, const char *prefix, char ***names, size_t *n)
{
    static const char op[] = "log_list";
    meta_sqlite *m = ms(mm);
    if (!prefix)
        prefix = "";
    size_t plen = strlen(prefix);
    char **arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st;
    *names = NULL;
    *n = 0;
    pthread_mutex_lock(&m->mu);
    /* Names with the prefix form one contiguous run starting at the prefix
     * (BINARY collation is memcmp order); no LIKE, so '%' and '_' are plain. */
    int rc = prep(m, op, &st, "SELECT name FROM logs WHERE name >= ? ORDER BY name", "s", prefix);
    if (rc < 0)
        goto out_unlock;
    char name[WP_LOG_NAME_MAX + 1];
    while ((rc = step(m, op, st)) == 1) {
        if ((rc = col_name(m, op, st, 0, WP_LOG_NAME_MAX, name)) < 0)
            break;
        if (strncmp(name, prefix, plen) != 0)
            break;
        if ((rc = grow((void **)&arr, &cap, cnt + 1, sizeof *arr, op)) < 0)
            break;
        if (!(arr[cnt] = strdup(name))) {
            rc = wp__err(WP_ENOMEM, "meta log_list: out of memory");
            break;
        }
        cnt++;
    }
    if (rc > 0)
        rc = 0;
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        wp_free_names(arr, cnt);
        return rc;
    }
    *names = arr;
    *n = cnt;
    return 0;
}

/* ---- segments ---------------------------------------------------------- */

#define SEG_COLS \
    "log_id, seg_id, state, last_entry_id, bytes, epoch, created_ms, completed_ms, rev, " \
    "truncated_ms, placement"

/* The placement column: 0..META_SEG_PLACEMENT_MAX printable bytes. */
static int col_placement(meta_sqlite *m, const char *op, sqlite3_stmt *st, int i, char *buf)
{
    if (sqlite3_column_type(st, i) != SQLITE_TEXT)
        return corrupt(m, op, sqlite3_column_name(st, i));
    const unsigned char *p = sqlite3_column_text(st, i);
    int len = sqlite3_column_bytes(st, i);
    if (!p && len > 0)
        return wp__err(WP_ENOMEM, "meta sqlite %s: out of memory", op);
    if (len < 0 || !meta_seg_placement_valid((const char *)p, (size_t)len))
        return corrupt(m, op, "segment placement");
    memcpy(buf, p, (size_t)len);
    buf[len] = '\0';
    return 0;
}

static int row_seg(meta_sqlite *m, const char *op, sqlite3_stmt *st, meta_seg *s)
{
    int64_t state = 0;
    int rc;
    if ((rc = col_i64(m, op, st, 0, 1, &s->log_id)) < 0 ||
        (rc = col_i64(m, op, st, 1, 0, &s->seg_id)) < 0 ||
        (rc = col_i64(m, op, st, 2, WP_SEG_ACTIVE, &state)) < 0 ||
        (rc = col_i64(m, op, st, 3, -1, &s->last_entry_id)) < 0 ||
        (rc = col_i64(m, op, st, 4, 0, &s->bytes)) < 0 ||
        (rc = col_i64(m, op, st, 5, 0, &s->epoch)) < 0 ||
        (rc = col_i64(m, op, st, 6, INT64_MIN, &s->created_ms)) < 0 ||
        (rc = col_i64(m, op, st, 7, INT64_MIN, &s->completed_ms)) < 0 ||
        (rc = col_i64(m, op, st, 8, 1, &s->rev)) < 0 ||
        (rc = col_i64(m, op, st, 9, INT64_MIN, &s->truncated_ms)) < 0 ||
        (rc = col_placement(m, op, st, 10, s->placement)) < 0)
        return rc;
    if (state > WP_SEG_TRUNCATED)
        return corrupt(m, op, "segment state");
    s->state = (int)state;
    return 0;
}

static int seg_check(const char *op, const meta_seg *s)
{
    if (s->log_id < 1 || s->seg_id < 0 || s->state < WP_SEG_ACTIVE || s->state > WP_SEG_TRUNCATED ||
        s->last_entry_id < -1 || s->bytes < 0 || s->epoch < 0 ||
        !meta_seg_placement_valid(s->placement, strnlen(s->placement, sizeof s->placement)))
        return wp__err(WP_EINVAL, "meta %s: bad segment %lld/%lld", op, (long long)s->log_id,
                       (long long)s->seg_id);
    return 0;
}

static int seg_load(meta_sqlite *m, const char *op, int64_t log_id, int64_t seg_id, meta_seg *out)
{
    sqlite3_stmt *st;
    int rc = prep(m, op, &st, "SELECT " SEG_COLS " FROM segments WHERE log_id = ? AND seg_id = ?",
                  "ii", log_id, seg_id);
    if (rc < 0)
        return rc;
    rc = step(m, op, st);
    if (rc == 1)
        rc = row_seg(m, op, st, out);
    else if (rc == 0)
        rc = wp__err(WP_ENOENT, "meta %s: no segment %lld/%lld", op, (long long)log_id,
                     (long long)seg_id);
    sqlite3_finalize(st);
    return rc;
}

static int sq_seg_create(meta *mm, const meta_log *guard, meta_seg *s)
{
    static const char op[] = "seg_create";
    meta_sqlite *m = ms(mm);
    int rc = name_check(op, guard->name, WP_LOG_NAME_MAX);
    if (rc < 0 || (rc = seg_check(op, s)) < 0)
        return rc;
    if (s->log_id != guard->log_id)
        return wp__err(WP_EINVAL, "meta seg_create: segment of log %lld under guard of log %lld",
                       (long long)s->log_id, (long long)guard->log_id);
    meta_log cur;
    meta_seg old;
    int64_t rev = 0;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = log_load(m, op, guard->name, &cur)) < 0)
        goto out_tx;
    if (cur.rev != guard->rev || cur.log_id != guard->log_id) {
        rc = rev_conflict(op, guard->name, guard->rev, cur.rev);
        goto out_tx;
    }
    rc = seg_load(m, op, s->log_id, s->seg_id, &old);
    if (rc == 0) {
        rc = wp__err(WP_EEXIST, "meta seg_create: segment %lld/%lld exists",
                     (long long)s->log_id, (long long)s->seg_id);
        goto out_tx;
    }
    if (rc != WP_ENOENT || (rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL,
              "INSERT INTO segments (" SEG_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              "iiiiiiiiiis", s->log_id, s->seg_id, (int64_t)s->state, s->last_entry_id, s->bytes,
              s->epoch, s->created_ms, s->completed_ms, rev, s->truncated_ms, s->placement);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        s->rev = rev;
    return rc;
}

static int sq_seg_get(meta *mm, int64_t log_id, int64_t seg_id, meta_seg *out)
{
    meta_sqlite *m = ms(mm);
    pthread_mutex_lock(&m->mu);
    int rc = seg_load(m, "seg_get", log_id, seg_id, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_seg_list(meta *mm, int64_t log_id, meta_seg **out, size_t *n)
{
    static const char op[] = "seg_list";
    meta_sqlite *m = ms(mm);
    meta_seg *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&m->mu);
    int rc = prep(m, op, &st, "SELECT " SEG_COLS " FROM segments WHERE log_id = ? ORDER BY seg_id",
                  "i", log_id);
    if (rc < 0)
        goto out_unlock;
    while ((rc = step(m, op, st)) == 1) {
        if ((rc = grow((void **)&arr, &cap, cnt + 1, sizeof *arr, op)) < 0 ||
            (rc = row_seg(m, op, st, &arr[cnt])) < 0)
            break;
        cnt++;
    }
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return 0;
}

static int sq_seg_update(meta *mm, meta_seg *s)
{
    static const char op[] = "seg_update";
    meta_sqlite *m = ms(mm);
    int rc = seg_check(op, s);
    if (rc < 0)
        return rc;
    meta_seg cur;
    int64_t rev = 0;
    char what[64];
    snprintf(what, sizeof what, "segment %lld/%lld", (long long)s->log_id, (long long)s->seg_id);
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = seg_load(m, op, s->log_id, s->seg_id, &cur)) < 0)
        goto out_tx;
    if (cur.rev != s->rev) {
        rc = rev_conflict(op, what, s->rev, cur.rev);
        goto out_tx;
    }
    if ((rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL,
              "UPDATE segments SET state = ?, last_entry_id = ?, bytes = ?, completed_ms = ?, "
              "truncated_ms = ?, "
              "rev = ? WHERE log_id = ? AND seg_id = ?",
              "iiiiiiii", (int64_t)s->state, s->last_entry_id, s->bytes, s->completed_ms,
              s->truncated_ms, rev,
              s->log_id, s->seg_id);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        s->rev = rev;
    return rc;
}

static int sq_seg_delete(meta *mm, int64_t log_id, int64_t seg_id, int64_t expect_rev)
{
    static const char op[] = "seg_delete";
    meta_sqlite *m = ms(mm);
    meta_seg cur;
    int64_t rev;
    char what[64];
    snprintf(what, sizeof what, "segment %lld/%lld", (long long)log_id, (long long)seg_id);
    pthread_mutex_lock(&m->mu);
    int rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = seg_load(m, op, log_id, seg_id, &cur)) < 0)
        goto out_tx;
    if (expect_rev != 0 && cur.rev != expect_rev) {
        rc = rev_conflict(op, what, expect_rev, cur.rev);
        goto out_tx;
    }
    if ((rc = rev_next(m, op, &rev)) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM claims WHERE log_id = ? AND seg_id = ?", "ii",
                   log_id, seg_id)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL, "DELETE FROM segments WHERE log_id = ? AND seg_id = ?", "ii", log_id,
              seg_id);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- leases ------------------------------------------------------------ */

/* Deletes expired leases and the readers, nodes, claims and records
 * attached to them (lazy expiry; keys of expired leases are already
 * invisible to every read). */
static int purge_expired(meta_sqlite *m, const char *op, int64_t now)
{
    static const char *const sql[] = {
        "DELETE FROM readers WHERE lease_id IN "
        "(SELECT lease_id FROM leases WHERE expires_ms <= ?)",
        "DELETE FROM nodes WHERE lease_id IN "
        "(SELECT lease_id FROM leases WHERE expires_ms <= ?)",
        "DELETE FROM claims WHERE lease_id IN "
        "(SELECT lease_id FROM leases WHERE expires_ms <= ?)",
        "DELETE FROM records WHERE lease_id IN "
        "(SELECT lease_id FROM leases WHERE expires_ms <= ?)",
        "DELETE FROM leases WHERE expires_ms <= ?",
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof sql / sizeof *sql; i++)
        rc = exec(m, op, NULL, sql[i], "i", now);
    return rc;
}

static int sq_lease_grant(meta *mm, int64_t ttl_ms, int64_t *lease_id)
{
    static const char op[] = "lease_grant";
    meta_sqlite *m = ms(mm);
    if (ttl_ms <= 0 || ttl_ms > META_LEASE_TTL_MS_MAX)
        return wp__err(WP_EINVAL, "meta lease_grant: ttl %lld ms out of range (1..%lld)",
                       (long long)ttl_ms, (long long)META_LEASE_TTL_MS_MAX);
    int64_t id = 0;
    pthread_mutex_lock(&m->mu);
    int rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    int64_t now = wp__wall_ms();
    if ((rc = purge_expired(m, op, now)) < 0 || (rc = gen_next(m, op, "leaseidgen", &id)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL, "INSERT INTO leases (lease_id, ttl_ms, expires_ms) VALUES (?, ?, ?)",
              "iii", id, ttl_ms, now + ttl_ms);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        *lease_id = id;
    return rc;
}

static int sq_lease_keepalive(meta *mm, int64_t lease_id)
{
    static const char op[] = "lease_keepalive";
    meta_sqlite *m = ms(mm);
    int changes = 0;
    pthread_mutex_lock(&m->mu);
    int rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    int64_t now = wp__wall_ms();
    if ((rc = purge_expired(m, op, now)) < 0)
        goto out_tx;
    rc = exec(m, op, &changes, "UPDATE leases SET expires_ms = ? + ttl_ms WHERE lease_id = ?",
              "ii", now, lease_id);
    if (rc == 0 && changes == 0)
        rc = wp__err(WP_ENOENT, "meta lease_keepalive: lease %lld expired or revoked",
                     (long long)lease_id);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_lease_revoke(meta *mm, int64_t lease_id)
{
    static const char op[] = "lease_revoke";
    meta_sqlite *m = ms(mm);
    int changes = 0;
    if (lease_id == 0)
        return wp__err(WP_EINVAL, "meta lease_revoke: lease 0 is 'no lease'");
    pthread_mutex_lock(&m->mu);
    int rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = purge_expired(m, op, wp__wall_ms())) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM readers WHERE lease_id = ?", "i", lease_id)) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM nodes WHERE lease_id = ?", "i", lease_id)) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM claims WHERE lease_id = ?", "i", lease_id)) < 0 ||
        (rc = exec(m, op, NULL, "DELETE FROM records WHERE lease_id = ?", "i", lease_id)) < 0 ||
        (rc = exec(m, op, &changes, "DELETE FROM leases WHERE lease_id = ?", "i", lease_id)) < 0)
        goto out_tx;
    if (changes == 0)
        rc = wp__err(WP_ENOENT, "meta lease_revoke: lease %lld expired or revoked",
                     (long long)lease_id);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- readers ----------------------------------------------------------- */

static int sq_reader_put(meta *mm, meta_reader *r)
{
    static const char op[] = "reader_put";
    meta_sqlite *m = ms(mm);
    int rc = name_check(op, r->name, WP_READER_NAME_MAX);
    if (rc < 0)
        return rc;
    if (r->seg_id < 0 || r->entry_id < 0 || r->lease_id < 0)
        return wp__err(WP_EINVAL, "meta reader_put %s: bad position or lease", r->name);
    int64_t rev = 0, n = 0;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    int64_t now = wp__wall_ms();
    if ((rc = purge_expired(m, op, now)) < 0)
        goto out_tx;
    sqlite3_stmt *st;
    if ((rc = prep(m, op, &st, "SELECT count(*) FROM logs WHERE log_id = ?", "i", r->log_id)) < 0)
        goto out_tx;
    if ((rc = step(m, op, st)) == 1)
        rc = col_i64(m, op, st, 0, 0, &n);
    sqlite3_finalize(st);
    if (rc < 0)
        goto out_tx;
    if (n == 0) {
        rc = wp__err(WP_ENOENT, "meta reader_put %s: no log with id %lld", r->name,
                     (long long)r->log_id);
        goto out_tx;
    }
    if (r->lease_id != 0) {
        int changes = 0;
        /* A no-op write that tells whether the lease is live. */
        rc = exec(m, op, &changes, "UPDATE leases SET ttl_ms = ttl_ms WHERE lease_id = ?", "i",
                  r->lease_id);
        if (rc == 0 && changes == 0)
            rc = wp__err(WP_ENOENT, "meta reader_put %s: lease %lld expired or revoked",
                         r->name, (long long)r->lease_id);
        if (rc < 0)
            goto out_tx;
    }
    if ((rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL,
              "INSERT OR REPLACE INTO readers (log_id, name, seg_id, entry_id, lease_id, rev) "
              "VALUES (?, ?, ?, ?, ?, ?)",
              "isiiii", r->log_id, r->name, r->seg_id, r->entry_id, r->lease_id, rev);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        r->rev = rev;
    return rc;
}

static int sq_reader_delete(meta *mm, int64_t log_id, const char *name)
{
    static const char op[] = "reader_delete";
    meta_sqlite *m = ms(mm);
    int rc = name_check(op, name, WP_READER_NAME_MAX);
    if (rc < 0)
        return rc;
    int changes = 0;
    int64_t rev;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = purge_expired(m, op, wp__wall_ms())) < 0 ||
        (rc = exec(m, op, &changes, "DELETE FROM readers WHERE log_id = ? AND name = ?", "is",
                   log_id, name)) < 0)
        goto out_tx;
    if (changes == 0)
        rc = wp__err(WP_ENOENT, "meta reader_delete: no reader '%s' on log %lld", name,
                     (long long)log_id);
    else
        rc = rev_next(m, op, &rev);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_reader_list(meta *mm, int64_t log_id, meta_reader **out, size_t *n)
{
    static const char op[] = "reader_list";
    meta_sqlite *m = ms(mm);
    meta_reader *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&m->mu);
    /* Registrations whose lease expired are invisible (purged lazily). */
    int rc = prep(m, op, &st,
                  "SELECT r.log_id, r.name, r.seg_id, r.entry_id, r.lease_id, r.rev "
                  "FROM readers r LEFT JOIN leases l ON l.lease_id = r.lease_id "
                  "WHERE r.log_id = ? AND (r.lease_id = 0 OR l.expires_ms > ?) ORDER BY r.name",
                  "ii", log_id, wp__wall_ms());
    if (rc < 0)
        goto out_unlock;
    while ((rc = step(m, op, st)) == 1) {
        if ((rc = grow((void **)&arr, &cap, cnt + 1, sizeof *arr, op)) < 0)
            break;
        meta_reader *r = &arr[cnt];
        if ((rc = col_i64(m, op, st, 0, 1, &r->log_id)) < 0 ||
            (rc = col_name(m, op, st, 1, WP_READER_NAME_MAX, r->name)) < 0 ||
            (rc = col_i64(m, op, st, 2, 0, &r->seg_id)) < 0 ||
            (rc = col_i64(m, op, st, 3, 0, &r->entry_id)) < 0 ||
            (rc = col_i64(m, op, st, 4, 0, &r->lease_id)) < 0 ||
            (rc = col_i64(m, op, st, 5, 1, &r->rev)) < 0)
            break;
        cnt++;
    }
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return 0;
}

/* ---- nodes ------------------------------------------------------------- */

/* Live registrations only: a node whose lease expired is invisible (purged
 * lazily). A lease_id <= 0 is never written, so such a row is shown and
 * then reported corrupt rather than hidden. */
#define NODE_SELECT                                                                      \
    "SELECT n.node_id, n.value, n.lease_id, n.rev "                                      \
    "FROM nodes n LEFT JOIN leases l ON l.lease_id = n.lease_id "                        \
    "WHERE (n.lease_id <= 0 OR l.expires_ms > ?)"

static int node_corrupt(meta_sqlite *m, const char *op, const char *id, const char *what)
{
    return wp__err(WP_ECORRUPT, "meta sqlite %s (%s): corrupt record: node '%s': %s", op,
                   m->path, id, what);
}

static int row_node(meta_sqlite *m, const char *op, sqlite3_stmt *st, meta_node *n)
{
    memset(n, 0, sizeof *n);
    int rc = col_name(m, op, st, 0, WP_NODE_ID_MAX, n->id);
    if (rc < 0)
        return rc;
    if (!meta_node_id_valid(n->id, strlen(n->id)))
        return corrupt(m, op, "node_id");
    if (sqlite3_column_type(st, 1) != SQLITE_BLOB)
        return node_corrupt(m, op, n->id, "value is not a blob");
    const void *v = sqlite3_column_blob(st, 1);
    int len = sqlite3_column_bytes(st, 1);
    const char *why = v && len > 0 ? meta_node_decode(v, (size_t)len, n) : "empty value";
    if (why)
        return node_corrupt(m, op, n->id, why);
    int64_t lease = 0;
    if ((rc = col_i64(m, op, st, 2, 1, &lease)) < 0 || (rc = col_i64(m, op, st, 3, 1, &n->rev)) < 0)
        return rc;
    if (lease != n->lease_id)
        return node_corrupt(m, op, n->id, "lease_id differs from the value's");
    return 0;
}

static int sq_node_put(meta *mm, meta_node *n)
{
    static const char op[] = "node_put";
    meta_sqlite *m = ms(mm);
    int rc = meta_node_check(op, n);
    if (rc < 0)
        return rc;
    uint8_t val[META_NODE_VALUE_MAX];
    size_t len = meta_node_encode(n, val);
    int64_t rev = 0;
    int changes = 0;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = purge_expired(m, op, wp__wall_ms())) < 0)
        goto out_tx;
    /* A no-op write that tells whether the lease is live. */
    rc = exec(m, op, &changes, "UPDATE leases SET ttl_ms = ttl_ms WHERE lease_id = ?", "i",
              n->lease_id);
    if (rc == 0 && changes == 0)
        rc = wp__err(WP_ENOENT, "meta node_put %s: lease %lld expired or revoked", n->id,
                     (long long)n->lease_id);
    if (rc < 0 || (rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL,
              "INSERT OR REPLACE INTO nodes (node_id, value, lease_id, rev) VALUES (?, ?, ?, ?)",
              "sbii", n->id, (const void *)val, len, n->lease_id, rev);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        n->rev = rev;
    return rc;
}

static int sq_node_get(meta *mm, const char *node_id, meta_node *out)
{
    static const char op[] = "node_get";
    meta_sqlite *m = ms(mm);
    int rc = meta_node_id_check(op, node_id);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st;
    pthread_mutex_lock(&m->mu);
    rc = prep(m, op, &st, NODE_SELECT " AND n.node_id = ?", "is", wp__wall_ms(), node_id);
    if (rc < 0)
        goto out_unlock;
    rc = step(m, op, st);
    if (rc == 1)
        rc = row_node(m, op, st, out);
    else if (rc == 0)
        rc = wp__err(WP_ENOENT, "meta %s: no node '%s'", op, node_id);
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_node_delete(meta *mm, const char *node_id)
{
    static const char op[] = "node_delete";
    meta_sqlite *m = ms(mm);
    int rc = meta_node_id_check(op, node_id);
    if (rc < 0)
        return rc;
    int changes = 0;
    int64_t rev;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = purge_expired(m, op, wp__wall_ms())) < 0 ||
        (rc = exec(m, op, &changes, "DELETE FROM nodes WHERE node_id = ?", "s", node_id)) < 0)
        goto out_tx;
    if (changes == 0)
        rc = wp__err(WP_ENOENT, "meta %s: no node '%s'", op, node_id);
    else
        rc = rev_next(m, op, &rev);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_node_list(meta *mm, const char *kind, meta_node **out, size_t *n)
{
    static const char op[] = "node_list";
    meta_sqlite *m = ms(mm);
    meta_node *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    if (!kind)
        kind = "";
    if (*kind && !meta_node_kind_valid(kind, strnlen(kind, META_NODE_KIND_MAX + 1)))
        return wp__err(WP_EINVAL, "meta %s: bad kind (1..%d bytes of [a-z0-9_-])", op,
                       META_NODE_KIND_MAX);
    pthread_mutex_lock(&m->mu);
    int rc = prep(m, op, &st, NODE_SELECT " ORDER BY n.node_id", "i", wp__wall_ms());
    if (rc < 0)
        goto out_unlock;
    while ((rc = step(m, op, st)) == 1) {
        if ((rc = grow((void **)&arr, &cap, cnt + 1, sizeof *arr, op)) < 0 ||
            (rc = row_node(m, op, st, &arr[cnt])) < 0)
            break;
        cnt += !*kind || strcmp(arr[cnt].kind, kind) == 0;
    }
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return 0;
}

/* ---- settings ---------------------------------------------------------- */

static int sq_setting_get(meta *mm, const char *name, char *value, size_t cap)
{
    static const char op[] = "setting_get";
    meta_sqlite *m = ms(mm);
    int rc = meta_setting_name_check(op, name);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st;
    pthread_mutex_lock(&m->mu);
    rc = prep(m, op, &st, "SELECT value FROM settings WHERE name = ?", "s", name);
    if (rc < 0)
        goto out_unlock;
    rc = step(m, op, st);
    if (rc == 0) {
        rc = wp__err(WP_ENOENT, "meta %s: no setting '%s'", op, name);
    } else if (rc == 1) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        int len = sqlite3_column_bytes(st, 0);
        if (sqlite3_column_type(st, 0) != SQLITE_TEXT || !v ||
            !meta_setting_value_valid(v, (size_t)len))
            rc = corrupt(m, op, "setting value");
        else
            rc = meta_setting_copy(op, name, v, (size_t)len, value, cap);
    }
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_setting_put(meta *mm, const char *name, const char *value)
{
    static const char op[] = "setting_put";
    meta_sqlite *m = ms(mm);
    int rc = meta_setting_name_check(op, name);
    if (rc == 0)
        rc = meta_setting_value_check(op, name, value);
    if (rc < 0)
        return rc;
    int64_t rev = 0;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = rev_next(m, op, &rev)) == 0)
        rc = exec(m, op, NULL,
                  "INSERT OR REPLACE INTO settings (name, value, rev) VALUES (?, ?, ?)", "ssi",
                  name, value, rev);
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- upload claims ------------------------------------------------------ */

/* Live claims only: one whose lease expired (or is missing) is invisible
 * (purged lazily). A lease_id <= 0 is never written, so such a row is shown
 * and then reported corrupt rather than hidden. */
#define CLAIM_SELECT                                                                     \
    "SELECT c.log_id, c.seg_id, c.value, c.lease_id, c.rev "                             \
    "FROM claims c LEFT JOIN leases l ON l.lease_id = c.lease_id "                       \
    "WHERE (c.lease_id <= 0 OR l.expires_ms > ?)"

static int claim_corrupt(meta_sqlite *m, const char *op, int64_t log_id, int64_t seg_id,
                         const char *what)
{
    return wp__err(WP_ECORRUPT, "meta sqlite %s (%s): corrupt record: claim %lld/%lld: %s", op,
                   m->path, (long long)log_id, (long long)seg_id, what);
}

static int row_claim(meta_sqlite *m, const char *op, sqlite3_stmt *st, meta_claim *c)
{
    int64_t log_id = 0, seg_id = 0, lease = 0;
    memset(c, 0, sizeof *c);
    int rc;
    if ((rc = col_i64(m, op, st, 0, 1, &log_id)) < 0 ||
        (rc = col_i64(m, op, st, 1, 0, &seg_id)) < 0)
        return rc;
    if (sqlite3_column_type(st, 2) != SQLITE_BLOB)
        return claim_corrupt(m, op, log_id, seg_id, "value is not a blob");
    const void *v = sqlite3_column_blob(st, 2);
    int len = sqlite3_column_bytes(st, 2);
    const char *why = v && len > 0 ? meta_claim_decode(v, (size_t)len, c) : "empty value";
    if (why)
        return claim_corrupt(m, op, log_id, seg_id, why);
    if (c->log_id != log_id || c->seg_id != seg_id)
        return claim_corrupt(m, op, log_id, seg_id, "ids differ from the key");
    if (col_i64(m, op, st, 3, 1, &lease) < 0 || col_i64(m, op, st, 4, 1, &c->rev) < 0)
        return claim_corrupt(m, op, log_id, seg_id, "lease_id or rev column");
    if (lease != c->lease_id)
        return claim_corrupt(m, op, log_id, seg_id, "lease_id differs from the value's");
    return 0;
}

/* The live claim of a segment, inside the current transaction or
 * autocommit: 0 and *out, WP_ENOENT, or an error. */
static int claim_load(meta_sqlite *m, const char *op, int64_t log_id, int64_t seg_id,
                      meta_claim *out)
{
    sqlite3_stmt *st;
    int rc = prep(m, op, &st, CLAIM_SELECT " AND c.log_id = ? AND c.seg_id = ?", "iii",
                  wp__wall_ms(), log_id, seg_id);
    if (rc < 0)
        return rc;
    rc = step(m, op, st);
    if (rc == 1)
        rc = row_claim(m, op, st, out);
    else if (rc == 0)
        rc = wp__err(WP_ENOENT, "meta %s: no claim of segment %lld/%lld", op, (long long)log_id,
                     (long long)seg_id);
    sqlite3_finalize(st);
    return rc;
}

/* claim_create's checks inside its transaction, in the documented order:
 * the segment exists, no live claim, the lease is live. */
static int claim_create_check(meta_sqlite *m, const char *op, const meta_claim *c)
{
    meta_seg seg;
    meta_claim cur;
    int rc = purge_expired(m, op, wp__wall_ms());
    if (rc < 0 || (rc = seg_load(m, op, c->log_id, c->seg_id, &seg)) < 0)
        return rc;
    rc = claim_load(m, op, c->log_id, c->seg_id, &cur);
    if (rc == 0)
        return wp__err(WP_EEXIST, "meta %s: segment %lld/%lld is claimed by '%s' (rev %lld, "
                       "lease %lld)", op, (long long)c->log_id, (long long)c->seg_id,
                       cur.node_id, (long long)cur.rev, (long long)cur.lease_id);
    if (rc != WP_ENOENT)
        return rc;
    int changes = 0;
    /* A no-op write that tells whether the lease is live. */
    rc = exec(m, op, &changes, "UPDATE leases SET ttl_ms = ttl_ms WHERE lease_id = ?", "i",
              c->lease_id);
    if (rc == 0 && changes == 0)
        rc = wp__err(WP_ENOENT, "meta %s %lld/%lld: lease %lld expired or revoked", op,
                     (long long)c->log_id, (long long)c->seg_id, (long long)c->lease_id);
    return rc;
}

static int sq_claim_create(meta *mm, meta_claim *c)
{
    static const char op[] = "claim_create";
    meta_sqlite *m = ms(mm);
    int rc = meta_claim_check(op, c);
    if (rc < 0)
        return rc;
    uint8_t val[META_CLAIM_VALUE_MAX];
    size_t len = meta_claim_encode(c, NULL, val);
    int64_t rev = 0;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = claim_create_check(m, op, c)) < 0 || (rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    /* REPLACE: a row whose lease is missing is not live (never expected). */
    rc = exec(m, op, NULL,
              "INSERT OR REPLACE INTO claims (log_id, seg_id, value, lease_id, rev) "
              "VALUES (?, ?, ?, ?, ?)",
              "iibii", c->log_id, c->seg_id, (const void *)val, len, c->lease_id, rev);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
        c->rev = rev;
    return rc;
}

static int sq_claim_get(meta *mm, int64_t log_id, int64_t seg_id, meta_claim *out)
{
    static const char op[] = "claim_get";
    meta_sqlite *m = ms(mm);
    int rc = meta_claim_key_check(op, log_id, seg_id);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&m->mu);
    rc = claim_load(m, op, log_id, seg_id, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_claim_delete(meta *mm, int64_t log_id, int64_t seg_id, int64_t expect_rev)
{
    static const char op[] = "claim_delete";
    meta_sqlite *m = ms(mm);
    int rc = meta_claim_key_check(op, log_id, seg_id);
    if (rc < 0)
        return rc;
    if (expect_rev < 0)
        return wp__err(WP_EINVAL, "meta %s: bad expect_rev %lld", op, (long long)expect_rev);
    meta_claim cur;
    int64_t rev;
    char what[64];
    snprintf(what, sizeof what, "claim %lld/%lld", (long long)log_id, (long long)seg_id);
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = purge_expired(m, op, wp__wall_ms())) < 0 ||
        (rc = claim_load(m, op, log_id, seg_id, &cur)) < 0)
        goto out_tx;
    if (expect_rev != 0 && cur.rev != expect_rev) {
        rc = rev_conflict(op, what, expect_rev, cur.rev);
        goto out_tx;
    }
    if ((rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL, "DELETE FROM claims WHERE log_id = ? AND seg_id = ?", "ii", log_id,
              seg_id);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_claim_list(meta *mm, int64_t log_id, meta_claim **out, size_t *n)
{
    static const char op[] = "claim_list";
    meta_sqlite *m = ms(mm);
    meta_claim *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    if (log_id < 0)
        return wp__err(WP_EINVAL, "meta %s: bad log_id %lld (0: every log)", op,
                       (long long)log_id);
    pthread_mutex_lock(&m->mu);
    int rc = log_id ? prep(m, op, &st, CLAIM_SELECT " AND c.log_id = ? ORDER BY c.log_id, c.seg_id",
                           "ii", wp__wall_ms(), log_id)
                    : prep(m, op, &st, CLAIM_SELECT " ORDER BY c.log_id, c.seg_id", "i",
                           wp__wall_ms());
    if (rc < 0)
        goto out_unlock;
    while ((rc = step(m, op, st)) == 1) {
        if ((rc = grow((void **)&arr, &cap, cnt + 1, sizeof *arr, op)) < 0 ||
            (rc = row_claim(m, op, st, &arr[cnt])) < 0)
            break;
        cnt++;
    }
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return 0;
}

/* ---- generic records (docs/metadata.md §3.7) --------------------------- */

/* Live records only: one whose lease expired (or is missing) is invisible
 * (purged lazily). A lease_id < 0 or not an integer is never written, so
 * such a row is shown and then reported corrupt rather than hidden (and
 * replaced by a put). */
#define RECORD_SELECT                                                                    \
    "SELECT r.key, r.value, r.lease_id, r.rev, r.create_rev "                            \
    "FROM records r LEFT JOIN leases l ON l.lease_id = r.lease_id "                      \
    "WHERE (r.lease_id <= 0 OR typeof(r.lease_id) <> 'integer' OR l.expires_ms > ?)"

static int record_corrupt(meta_sqlite *m, const char *op, const char *key, size_t klen,
                          const char *what)
{
    return wp__err(WP_ECORRUPT, "meta sqlite %s (%s): corrupt record: kv '%.*s': %s", op,
                   m->path, (int)(klen > META_KV_KEY_MAX ? META_KV_KEY_MAX : klen), key, what);
}

/* Decodes a RECORD_SELECT row into *kv, checked by the rules of a record
 * (meta_kv_read_check); the value (malloc'd) only if want_value. */
static int row_record(meta_sqlite *m, const char *op, sqlite3_stmt *st, meta_kv *kv,
                      bool want_value)
{
    memset(kv, 0, sizeof *kv);
    if (sqlite3_column_type(st, 0) != SQLITE_TEXT)
        return corrupt(m, op, "records key is not text");
    const char *key = (const char *)sqlite3_column_text(st, 0);
    size_t klen = (size_t)sqlite3_column_bytes(st, 0);
    if (!key)
        return wp__err(WP_ENOMEM, "meta sqlite %s: out of memory", op);
    int64_t f[3]; /* lease_id, rev, create_rev */
    for (int i = 0; i < 3; i++) {
        if (sqlite3_column_type(st, 2 + i) != SQLITE_INTEGER)
            return record_corrupt(m, op, key, klen, sqlite3_column_name(st, 2 + i));
        f[i] = sqlite3_column_int64(st, 2 + i);
    }
    if (sqlite3_column_type(st, 1) != SQLITE_BLOB)
        return record_corrupt(m, op, key, klen, "value is not a blob");
    const void *v = sqlite3_column_blob(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    const char *why = meta_kv_read_check(key, klen, len, f[0], f[1], f[2]);
    if (why)
        return record_corrupt(m, op, key, klen, why);
    if (len > 0 && !v)
        return wp__err(WP_ENOMEM, "meta sqlite %s: out of memory", op);
    memcpy(kv->key, key, klen);
    kv->key[klen] = '\0';
    kv->lease_id = f[0];
    kv->rev = f[1];
    kv->create_rev = f[2];
    if (!want_value)
        return 0;
    if (!(kv->value = malloc(len + 1)))
        return wp__err(WP_ENOMEM, "meta sqlite %s %s: out of memory", op, kv->key);
    if (len > 0) /* a zero-length blob reads as NULL */
        memcpy(kv->value, v, len);
    kv->value[len] = '\0';
    kv->len = len;
    return 0;
}

/* The live record at key, inside the current transaction or autocommit:
 * 0 and *out, WP_ENOENT, or an error. */
static int record_load(meta_sqlite *m, const char *op, const char *key, meta_kv *out,
                       bool want_value)
{
    sqlite3_stmt *st;
    int rc = prep(m, op, &st, RECORD_SELECT " AND r.key = ?", "is", wp__wall_ms(), key);
    if (rc < 0)
        return rc;
    rc = step(m, op, st);
    if (rc == 1)
        rc = row_record(m, op, st, out, want_value);
    else if (rc == 0)
        rc = wp__err(WP_ENOENT, "meta %s: no record '%s'", op, key);
    sqlite3_finalize(st);
    return rc;
}

static int sq_kv_get(meta *mm, const char *key, meta_kv *out)
{
    static const char op[] = "kv_get";
    meta_sqlite *m = ms(mm);
    int rc = meta_kv_key_check(op, key);
    if (rc < 0)
        return rc;
    if (!out)
        return wp__err(WP_EINVAL, "meta %s %s: out is NULL", op, key);
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->mu);
    rc = record_load(m, op, key, out, true);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* kv_put's checks inside its transaction, in the documented order: the
 * record against expect_rev, then the lease. *create_rev gets the live
 * record's create_rev (0: absent, the put creates it). */
static int kv_put_check(meta_sqlite *m, const char *op, const char *key, int64_t expect_rev,
                        int64_t lease_id, int64_t *create_rev)
{
    meta_kv cur;
    int rc = purge_expired(m, op, wp__wall_ms());
    if (rc < 0)
        return rc;
    rc = record_load(m, op, key, &cur, false);
    if (rc < 0 && rc != WP_ENOENT)
        return rc;
    bool exists = rc == 0;
    *create_rev = exists ? cur.create_rev : 0;
    if (expect_rev == 0 && exists)
        return wp__err(WP_EEXIST, "meta %s: record '%s' exists (rev %lld)", op, key,
                       (long long)cur.rev);
    if (expect_rev > 0 && !exists)
        return wp__err(WP_ENOENT, "meta %s: no record '%s'", op, key);
    if (expect_rev > 0 && cur.rev != expect_rev)
        return rev_conflict(op, key, expect_rev, cur.rev);
    if (lease_id == 0)
        return 0;
    int changes = 0;
    /* A no-op write that tells whether the lease is live. */
    rc = exec(m, op, &changes, "UPDATE leases SET ttl_ms = ttl_ms WHERE lease_id = ?", "i",
              lease_id);
    if (rc == 0 && changes == 0)
        rc = wp__err(WP_ENOENT, "meta %s %s: lease %lld expired or revoked", op, key,
                     (long long)lease_id);
    return rc;
}

static int sq_kv_put(meta *mm, const char *key, const void *value, size_t len,
                     int64_t expect_rev, int64_t lease_id, int64_t *rev_out)
{
    static const char op[] = "kv_put";
    meta_sqlite *m = ms(mm);
    int rc = meta_kv_put_check(op, key, value, len, expect_rev, lease_id);
    if (rc < 0)
        return rc;
    int64_t rev = 0, create_rev = 0;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = kv_put_check(m, op, key, expect_rev, lease_id, &create_rev)) < 0 ||
        (rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    /* REPLACE: a row whose lease is missing is not live (never expected).
     * A zero-length value is bound as "" (a NULL pointer would bind NULL). */
    rc = exec(m, op, NULL,
              "INSERT OR REPLACE INTO records (key, value, lease_id, rev, create_rev) "
              "VALUES (?, ?, ?, ?, ?)",
              "sbiii", key, value ? value : (const void *)"", len, lease_id, rev,
              create_rev ? create_rev : rev);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc == 0 && rev_out)
        *rev_out = rev;
    return rc;
}

static int sq_kv_delete(meta *mm, const char *key, int64_t expect_rev)
{
    static const char op[] = "kv_delete";
    meta_sqlite *m = ms(mm);
    int rc = meta_kv_key_check(op, key);
    if (rc < 0)
        return rc;
    if (expect_rev < 0)
        return wp__err(WP_EINVAL, "meta %s %s: bad expect_rev %lld (0: any)", op, key,
                       (long long)expect_rev);
    meta_kv cur;
    int64_t rev;
    pthread_mutex_lock(&m->mu);
    rc = tx_begin(m, op);
    if (rc < 0)
        goto out_unlock;
    if ((rc = purge_expired(m, op, wp__wall_ms())) < 0 ||
        (rc = record_load(m, op, key, &cur, false)) < 0)
        goto out_tx;
    if (expect_rev != 0 && cur.rev != expect_rev) {
        rc = rev_conflict(op, key, expect_rev, cur.rev);
        goto out_tx;
    }
    if ((rc = rev_next(m, op, &rev)) < 0)
        goto out_tx;
    rc = exec(m, op, NULL, "DELETE FROM records WHERE key = ?", "s", key);
out_tx:
    rc = tx_end(m, op, rc);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int sq_kv_list(meta *mm, const char *prefix, meta_kv **out, size_t *n)
{
    static const char op[] = "kv_list";
    meta_sqlite *m = ms(mm);
    *out = NULL;
    *n = 0;
    int rc = meta_kv_prefix_check(op, prefix);
    if (rc < 0)
        return rc;
    prefix = prefix ? prefix : "";
    size_t plen = strlen(prefix), cnt = 0, cap = 0, bytes = 0;
    meta_kv *arr = NULL;
    sqlite3_stmt *st;
    pthread_mutex_lock(&m->mu);
    /* Keys with the prefix form one contiguous run starting at it (BINARY
     * collation is memcmp order), as in log_list. */
    rc = prep(m, op, &st, RECORD_SELECT " AND r.key >= ? ORDER BY r.key", "is", wp__wall_ms(),
              prefix);
    if (rc < 0)
        goto out_unlock;
    while ((rc = step(m, op, st)) == 1) {
        /* The type first: reading a BLOB as text would convert it. */
        bool text = sqlite3_column_type(st, 0) == SQLITE_TEXT;
        const unsigned char *k = text ? sqlite3_column_text(st, 0) : NULL;
        if (k && strncmp((const char *)k, prefix, plen) != 0)
            break;
        if (cnt == META_KV_LIST_MAX) {
            rc = wp__err(WP_ETOOBIG, "meta %s '%s': more than %d records", op, prefix,
                         META_KV_LIST_MAX);
            break;
        }
        if ((rc = grow((void **)&arr, &cap, cnt + 1, sizeof *arr, op)) < 0 ||
            (rc = row_record(m, op, st, &arr[cnt], true)) < 0)
            break;
        bytes += arr[cnt++].len;
        if (bytes > META_KV_LIST_BYTES_MAX) {
            rc = wp__err(WP_ETOOBIG, "meta %s '%s': more than %d bytes of values", op, prefix,
                         META_KV_LIST_BYTES_MAX);
            break;
        }
    }
    if (rc > 0)
        rc = 0;
    sqlite3_finalize(st);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        meta_kv_free_list(arr, cnt);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return 0;
}

/* ---- open / close ------------------------------------------------------ */

static void sq_close(meta *mm)
{
    meta_sqlite *m = ms(mm);
    if (!m)
        return;
    sqlite3_close_v2(m->db);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const struct meta_ops sqlite_ops = {
    .name = "sqlite",
    .log_create = sq_log_create,
    .log_get = sq_log_get,
    .log_update = sq_log_update,
    .log_delete = sq_log_delete,
    .log_list = sq_log_list,
    .seg_create = sq_seg_create,
    .seg_get = sq_seg_get,
    .seg_list = sq_seg_list,
    .seg_update = sq_seg_update,
    .seg_delete = sq_seg_delete,
    .lease_grant = sq_lease_grant,
    .lease_keepalive = sq_lease_keepalive,
    .lease_revoke = sq_lease_revoke,
    .reader_put = sq_reader_put,
    .reader_delete = sq_reader_delete,
    .reader_list = sq_reader_list,
    .close = sq_close,
    .node_put = sq_node_put,
    .node_get = sq_node_get,
    .node_delete = sq_node_delete,
    .node_list = sq_node_list,
    .setting_get = sq_setting_get,
    .setting_put = sq_setting_put,
    .claim_create = sq_claim_create,
    .claim_get = sq_claim_get,
    .claim_delete = sq_claim_delete,
    .claim_list = sq_claim_list,
    .kv_get = sq_kv_get,
    .kv_put = sq_kv_put,
    .kv_delete = sq_kv_delete,
    .kv_list = sq_kv_list,
    /* .kv_watch: none; callers poll */
};

int meta_sqlite_open(const char *path, meta **out)
{
    *out = NULL;
    if (!path || !*path)
        return wp__err(WP_EINVAL, "meta sqlite open: empty path");
    if (strlen(path) > WP_PATH_MAX)
        return wp__err(WP_EINVAL, "meta sqlite open: path longer than %d bytes", WP_PATH_MAX);
    meta_sqlite *m = calloc(1, sizeof *m);
    if (!m)
        return wp__err(WP_ENOMEM, "meta sqlite open %s: out of memory", path);
    m->base.ops = &sqlite_ops;
    strcpy(m->path, path);
    int rc = 0;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        rc = wp__err(WP_ENOMEM, "meta sqlite open %s: mutex init failed", path);
        goto out_free;
    }
    int src = sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                                SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = sql_err(m, src, "open");
        goto out_close;
    }
    if ((rc = configure(m)) < 0)
        goto out_close;
    *out = &m->base;
    return 0;
out_close:
    sqlite3_close_v2(m->db); /* NULL-safe; closes a half-opened handle too */
    pthread_mutex_destroy(&m->mu);
out_free:
    free(m);
    return rc;
}
