/* test_meta_sqlite.c — the metadata conformance suite on the SQLite backend,
 * plus SQLite-only behaviour: bad files, permissions, schema version,
 * persistence across reopen, corrupt rows, lock timeouts, tables added at
 * open, the node and claim value codecs, generic records' rows (corrupt,
 * expiry, the list bound). */
#include "test.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include "conformance/meta_conformance.h"
#include "meta/meta.h"

typedef struct {
    char path[1100];
} sq_store;

static meta *sq_open_fresh(void *arg)
{
    sq_store *s = arg;
    snprintf(s->path, sizeof s->path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    if (meta_sqlite_open(s->path, &m) != 0)
        fprintf(stderr, "  meta_sqlite_open %s: %s\n", s->path, wp_errmsg());
    return m;
}

static meta *sq_open_again(void *arg)
{
    sq_store *s = arg;
    meta *m = NULL;
    if (meta_sqlite_open(s->path, &m) != 0)
        fprintf(stderr, "  meta_sqlite_open %s: %s\n", s->path, wp_errmsg());
    return m;
}

/* Runs one SQL statement on the file with a plain SQLite connection. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "  raw %s: %s\n", sql, db ? sqlite3_errmsg(db) : "?");
    sqlite3_close(db);
    return rc;
}

static int64_t raw_i64(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = INT64_MIN;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_text(const char *path, const char *sql, char *buf, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    buf[0] = '\0';
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0))
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

TEST(sq_bad_args)
{
    meta *m = (meta *)1;
    CHECK_RC(WP_EINVAL, meta_sqlite_open("", &m));
    CHECK(m == NULL);
    CHECK_RC(WP_EINVAL, meta_sqlite_open(NULL, &m));
}

TEST(sq_garbage_file)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/garbage.db", test_tmpdir("meta_sqlite"));
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    write_file(path, junk, sizeof junk);
    meta *m = (meta *)1;
    CHECK_RC(WP_ECORRUPT, meta_sqlite_open(path, &m));
    CHECK(m == NULL);
    CHECK(strstr(wp_errmsg(), path) != NULL);
    CHECK(strstr(wp_errmsg(), "not a database") != NULL);
}

TEST(sq_foreign_database)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/other.db", test_tmpdir("meta_sqlite"));
    REQUIRE(raw_exec(path, "CREATE TABLE t (x); INSERT INTO t VALUES (1);") == SQLITE_OK);
    meta *m = NULL;
    CHECK_RC(WP_EINVAL, meta_sqlite_open(path, &m));
    CHECK(m == NULL);
    CHECK(strstr(wp_errmsg(), "not a woodpecker metadata store") != NULL);
}

TEST(sq_missing_dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/no/such/dir/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    CHECK_RC(WP_EIO, meta_sqlite_open(path, &m));
    CHECK(m == NULL);
    CHECK(strstr(wp_errmsg(), path) != NULL);
}

/* In a child (dropping root to nobody, since root ignores modes): an
 * unreadable file, and a writable file in a directory where the -wal file
 * cannot be created. Exit status: the two return codes' negations. */
TEST(sq_permissions)
{
    const char *dir = test_tmpdir("meta_sqlite");
    char unreadable[1100], rodir[1100], inrodir[1200];
    snprintf(unreadable, sizeof unreadable, "%s/locked.db", dir);
    snprintf(rodir, sizeof rodir, "%s/ro", dir);
    snprintf(inrodir, sizeof inrodir, "%s/meta.db", rodir);
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(unreadable, &m) == 0);
    m->ops->close(m);
    REQUIRE(mkdir(rodir, 0755) == 0);
    REQUIRE(meta_sqlite_open(inrodir, &m) == 0);
    m->ops->close(m);
    char wal[1300];
    snprintf(wal, sizeof wal, "%s-wal", inrodir);
    unlink(wal); /* normally already gone after the last close */
    REQUIRE(chmod(unreadable, 0) == 0);
    REQUIRE(chmod(inrodir, 0666) == 0);
    REQUIRE(chmod(rodir, 0555) == 0);
    REQUIRE(chmod(dir, 0755) == 0);

    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(99);
        int rc[2];
        char msg[2][WP_ERRMSG_MAX];
        meta *c = NULL;
        rc[0] = meta_sqlite_open(unreadable, &c);
        snprintf(msg[0], sizeof msg[0], "%s", wp_errmsg());
        if (c)
            c->ops->close(c);
        c = NULL;
        rc[1] = meta_sqlite_open(inrodir, &c);
        snprintf(msg[1], sizeof msg[1], "%s", wp_errmsg());
        if (c)
            c->ops->close(c);
        if (write(pfd[1], rc, sizeof rc) != sizeof rc || write(pfd[1], msg, sizeof msg) != sizeof msg)
            _exit(98);
        _exit(0);
    }
    close(pfd[1]);
    int rc[2] = {0, 0};
    char msg[2][WP_ERRMSG_MAX];
    memset(msg, 0, sizeof msg);
    CHECK(read(pfd[0], rc, sizeof rc) == sizeof rc);
    CHECK(read(pfd[0], msg, sizeof msg) == sizeof msg);
    close(pfd[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    msg[0][WP_ERRMSG_MAX - 1] = msg[1][WP_ERRMSG_MAX - 1] = '\0';
    CHECK(rc[0] == WP_EIO);
    CHECK(strstr(msg[0], unreadable) != NULL);
    CHECK(rc[1] == WP_EIO);
    CHECK(strstr(msg[1], inrodir) != NULL);
    chmod(rodir, 0755);
    chmod(unreadable, 0644);
}

TEST(sq_schema_version)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    m->ops->close(m);
    CHECK(raw_i64(path, "SELECT value FROM kv WHERE key = 'version'") == 1);
    REQUIRE(raw_exec(path, "UPDATE kv SET value = 2 WHERE key = 'version'") == SQLITE_OK);
    m = NULL;
    CHECK_RC(WP_EINVAL, meta_sqlite_open(path, &m));
    CHECK(m == NULL);
    CHECK(strstr(wp_errmsg(), "schema version 2") != NULL);
    REQUIRE(raw_exec(path, "UPDATE kv SET value = 1 WHERE key = 'version'") == SQLITE_OK);
    CHECK_OK(meta_sqlite_open(path, &m));
    if (m)
        m->ops->close(m);
    /* A missing generator is corruption, not a fresh store. */
    REQUIRE(raw_exec(path, "DELETE FROM kv WHERE key = 'logidgen'") == SQLITE_OK);
    m = NULL;
    CHECK_RC(WP_ECORRUPT, meta_sqlite_open(path, &m));
    CHECK(m == NULL);
}

TEST(sq_reopen_persistence)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_log l, l2;
    CHECK_OK(m->ops->log_create(m, "p/one", 42, &l));
    CHECK_OK(m->ops->log_create(m, "p/two", 43, &l2));
    CHECK_OK(m->ops->log_delete(m, "p/two", 0));
    l.epoch = 5;
    l.trunc_seg = 1;
    l.trunc_entry = 9;
    CHECK_OK(m->ops->log_update(m, &l));
    meta_seg s;
    memset(&s, 0, sizeof s);
    s.log_id = l.log_id;
    s.seg_id = 0;
    s.state = WP_SEG_COMPLETED;
    s.last_entry_id = 99;
    s.bytes = 12345;
    s.epoch = 5;
    s.created_ms = 7;
    s.completed_ms = 8;
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_reader r;
    memset(&r, 0, sizeof r);
    r.log_id = l.log_id;
    snprintf(r.name, sizeof r.name, "sub");
    r.seg_id = 0;
    r.entry_id = 50;
    r.lease_id = lease;
    CHECK_OK(m->ops->reader_put(m, &r));
    m->ops->close(m);

    char instance[64], wal[16];
    raw_text(path, "SELECT value FROM kv WHERE key = 'instance'", instance, sizeof instance);
    CHECK(strlen(instance) == 32);
    raw_text(path, "PRAGMA journal_mode", wal, sizeof wal);
    CHECK(strcmp(wal, "wal") == 0);

    m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_log g;
    CHECK_OK(m->ops->log_get(m, "p/one", &g));
    CHECK(g.log_id == l.log_id && g.epoch == 5 && g.trunc_seg == 1 && g.trunc_entry == 9);
    CHECK(g.created_ms == 42 && g.rev == l.rev);
    CHECK_RC(WP_ENOENT, m->ops->log_get(m, "p/two", &g));
    meta_seg gs;
    CHECK_OK(m->ops->seg_get(m, l.log_id, 0, &gs));
    CHECK(gs.state == WP_SEG_COMPLETED && gs.last_entry_id == 99 && gs.bytes == 12345);
    CHECK(gs.epoch == 5 && gs.created_ms == 7 && gs.completed_ms == 8 && gs.rev == s.rev);
    meta_reader *rs = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->reader_list(m, l.log_id, &rs, &n));
    CHECK(n == 1 && rs && rs[0].entry_id == 50 && rs[0].lease_id == lease && rs[0].rev == r.rev);
    free(rs);
    CHECK_OK(m->ops->lease_keepalive(m, lease));
    /* Generators survive: ids and revisions keep growing. */
    meta_log l3;
    CHECK_OK(m->ops->log_create(m, "p/three", 44, &l3));
    CHECK(l3.log_id > l2.log_id);
    CHECK(l3.rev > r.rev);
    int64_t lease2 = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease2));
    CHECK(lease2 > lease);
    m->ops->close(m);
    char instance2[64];
    raw_text(path, "SELECT value FROM kv WHERE key = 'instance'", instance2, sizeof instance2);
    CHECK(strcmp(instance, instance2) == 0);
}

/* A file made before segment placements: its segments table lacks the
 * column; opening adds it, old rows read as "", new ones keep theirs, and
 * a bad placement in a row is corruption. */
TEST(sq_placement_column_added)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "old", 1, &l));
    meta_seg s;
    memset(&s, 0, sizeof s);
    s.log_id = l.log_id;
    s.last_entry_id = -1;
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    m->ops->close(m);
    REQUIRE(raw_exec(path, "ALTER TABLE segments DROP COLUMN placement") == SQLITE_OK);
    CHECK(raw_i64(path, "SELECT count(*) FROM pragma_table_info('segments') "
                        "WHERE name = 'placement'") == 0);
    m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_seg g;
    memset(&g, 0x55, sizeof g);
    CHECK_OK(m->ops->seg_get(m, l.log_id, 0, &g));
    CHECK(g.placement[0] == '\0' && g.last_entry_id == -1);
    s.seg_id = 1;
    snprintf(s.placement, sizeof s.placement, "a:1,b:2,c:3");
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    CHECK_OK(m->ops->seg_get(m, l.log_id, 1, &g));
    CHECK(strcmp(g.placement, "a:1,b:2,c:3") == 0);
    REQUIRE(raw_exec(path, "UPDATE segments SET placement = 'a b' WHERE seg_id = 1") == SQLITE_OK);
    CHECK_RC(WP_ECORRUPT, m->ops->seg_get(m, l.log_id, 1, &g));
    REQUIRE(raw_exec(path, "UPDATE segments SET placement = x'41' WHERE seg_id = 1") == SQLITE_OK);
    CHECK_RC(WP_ECORRUPT, m->ops->seg_get(m, l.log_id, 1, &g));
    m->ops->close(m);
}

/* Several processes open a store that does not exist yet, at once: each
 * opens it (switching a new file to WAL is retried, not "database is
 * locked"). */
TEST(sq_concurrent_first_open)
{
    for (int round = 0; round < 20; round++) {
        char path[1100];
        snprintf(path, sizeof path, "%s/fresh.db", test_tmpdir("meta_sqlite"));
        pid_t kids[4];
        for (int k = 0; k < 4; k++) {
            kids[k] = fork();
            if (kids[k] == 0) {
                meta *m = NULL;
                int rc = meta_sqlite_open(path, &m);
                if (rc)
                    fprintf(stderr, "  child %d: %s\n", k, wp_errmsg());
                else
                    m->ops->close(m);
                _exit(rc ? 1 : 0);
            }
        }
        int bad = 0;
        for (int k = 0; k < 4; k++) {
            int st = 0;
            waitpid(kids[k], &st, 0);
            bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        CHECK(bad == 0);
        if (bad)
            break;
    }
}

TEST(sq_corrupt_rows)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "c", 1, &l));
    meta_seg s;
    memset(&s, 0, sizeof s);
    s.log_id = l.log_id;
    s.last_entry_id = -1;
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    REQUIRE(raw_exec(path, "UPDATE logs SET epoch = 'junk'; UPDATE segments SET state = 9")
            == SQLITE_OK);
    CHECK_RC(WP_ECORRUPT, m->ops->log_get(m, "c", &l));
    CHECK(strstr(wp_errmsg(), "epoch") != NULL);
    meta_seg g;
    CHECK_RC(WP_ECORRUPT, m->ops->seg_get(m, l.log_id, 0, &g));
    meta_seg *segs = NULL;
    size_t n = 7;
    CHECK_RC(WP_ECORRUPT, m->ops->seg_list(m, l.log_id, &segs, &n));
    CHECK(segs == NULL && n == 0);
    REQUIRE(raw_exec(path, "UPDATE logs SET epoch = -3") == SQLITE_OK);
    CHECK_RC(WP_ECORRUPT, m->ops->log_get(m, "c", &l));
    m->ops->close(m);
}

/* Another connection holds the write lock longer than the busy timeout. */
TEST(sq_busy_unavailable)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    int64_t t0 = wp__now_ns();
    CHECK_RC(WP_EUNAVAILABLE, m->ops->log_create(m, "busy", 1, NULL));
    int64_t waited_ms = (wp__now_ns() - t0) / 1000000;
    CHECK(waited_ms >= 4000);
    meta_log g;
    CHECK_RC(WP_ENOENT, m->ops->log_get(m, "busy", &g)); /* readers are not blocked */
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    CHECK_OK(m->ops->log_create(m, "busy", 1, NULL));
    m->ops->close(m);
}

/* The node value codec shared by both backends (docs/metadata.md §5.2):
 * format 3 (with upload figures) and format 2 (without: all 0) round-trip,
 * formats 1 and 2 are still read with the fields they lack as 0, bad bytes
 * are refused. */
TEST(node_value_codec)
{
    meta_node n = {.lease_id = 7, .registered_ms = 1234, .disk_free = 5LL << 40, .load = 3};
    snprintf(n.kind, sizeof n.kind, "logstore");
    snprintf(n.zone, sizeof n.zone, "eu-1a");
    snprintf(n.addr, sizeof n.addr, "127.0.0.1:7400");
    uint8_t b[META_NODE_VALUE_MAX];
    size_t len = meta_node_encode(&n, b);
    CHECK(b[0] == 2 && len == 2 + 4 * 8 + 1 + 8 + 1 + 5 + 14); /* no figures: format 2 */
    meta_node d;
    memset(&d, 0xab, sizeof d);
    CHECK(meta_node_decode(b, len, &d) == NULL);
    CHECK(strcmp(d.kind, "logstore") == 0 && strcmp(d.zone, "eu-1a") == 0 &&
          strcmp(d.addr, "127.0.0.1:7400") == 0 && d.lease_id == 7 && d.registered_ms == 1234 &&
          d.disk_free == 5LL << 40 && d.load == 3);
    CHECK(d.segments == 0 && d.upload_segments == 0 && d.upload_bytes == 0 &&
          d.upload_lag_ms == 0);
    /* Format 3: any figure set; each at its offset after load. */
    meta_node f = n;
    f.segments = 12;
    f.upload_segments = 3;
    f.upload_bytes = 48LL << 20;
    f.upload_lag_ms = INT64_MAX;
    uint8_t b3[META_NODE_VALUE_MAX];
    size_t len3 = meta_node_encode(&f, b3);
    CHECK(b3[0] == 3 && len3 == len + 4 * 8);
    CHECK(meta_le64_get(b3 + 34) == 12 && meta_le64_get(b3 + 42) == 3 &&
          meta_le64_get(b3 + 50) == 48ULL << 20 && meta_le64_get(b3 + 58) == INT64_MAX);
    memset(&d, 0xab, sizeof d);
    CHECK(meta_node_decode(b3, len3, &d) == NULL);
    CHECK(strcmp(d.kind, "logstore") == 0 && strcmp(d.zone, "eu-1a") == 0 &&
          strcmp(d.addr, "127.0.0.1:7400") == 0 && d.lease_id == 7 && d.registered_ms == 1234 &&
          d.disk_free == 5LL << 40 && d.load == 3 && d.segments == 12 &&
          d.upload_segments == 3 && d.upload_bytes == 48LL << 20 && d.upload_lag_ms == INT64_MAX);
    for (int i = 0; i < 4; i++) { /* only one figure set: still format 3 */
        meta_node one = n;
        int64_t *fig[] = {&one.segments, &one.upload_segments, &one.upload_bytes,
                          &one.upload_lag_ms};
        *fig[i] = 1;
        CHECK(meta_node_encode(&one, b3) == len + 4 * 8 && b3[0] == 3);
        memset(&d, 0, sizeof d);
        CHECK(meta_node_decode(b3, len + 4 * 8, &d) == NULL);
        CHECK(d.segments + d.upload_segments + d.upload_bytes + d.upload_lag_ms == 1);
    }
    /* Refused in format 3: a negative figure, a length of format 2. */
    len3 = meta_node_encode(&f, b3);
    for (int i = 0; i < 4; i++) {
        uint8_t x[META_NODE_VALUE_MAX];
        memcpy(x, b3, len3);
        meta_le64_put(x + 34 + 8 * i, (uint64_t)-1);
        CHECK(meta_node_decode(x, len3, &d) != NULL);
    }
    for (size_t cut = 0; cut < 2 + 8 * 8 + 1 + 1 + 1 + 1; cut++)
        CHECK(meta_node_decode(b3, cut, &d) != NULL);
    /* Format 1, as written before zones: zone "", disk_free, load and the
     * figures 0. */
    uint8_t v1[64] = {1, 'N'};
    v1[2] = 0xd2, v1[3] = 0x04; /* registered_ms 1234 */
    v1[10] = 7;                 /* lease_id 7 */
    v1[18] = 8;
    memcpy(v1 + 19, "logstore", 8);
    memcpy(v1 + 27, "h:1", 3);
    memset(&d, 0xab, sizeof d);
    CHECK(meta_node_decode(v1, 30, &d) == NULL);
    CHECK(strcmp(d.kind, "logstore") == 0 && strcmp(d.addr, "h:1") == 0 && d.zone[0] == '\0' &&
          d.disk_free == 0 && d.load == 0 && d.lease_id == 7 && d.registered_ms == 1234 &&
          d.segments == 0 && d.upload_segments == 0 && d.upload_bytes == 0 &&
          d.upload_lag_ms == 0);
    /* Refused: a zone length past the end, a bad zone byte, an unknown format. */
    uint8_t bad[META_NODE_VALUE_MAX];
    memcpy(bad, b, len);
    bad[34 + 1 + 8] = 200;
    CHECK(meta_node_decode(bad, len, &d) != NULL);
    memcpy(bad, b, len);
    bad[34 + 1 + 8 + 1] = ' ';
    CHECK(meta_node_decode(bad, len, &d) != NULL);
    memcpy(bad, b3, len3);
    bad[0] = 4;
    CHECK(meta_node_decode(bad, len3, &d) != NULL);
    bad[0] = 0;
    CHECK(meta_node_decode(bad, len3, &d) != NULL);
    for (size_t cut = 0; cut < len; cut++)
        CHECK(meta_node_decode(b, cut, &d) != NULL || cut > 34 + 1 + 8 + 1 + 5);
}

/* Node records in the file: a format-2 value (as servers from before the
 * upload figures wrote it) reads with the figures 0; a stored negative
 * figure is WP_ECORRUPT naming the node. */
TEST(sq_node_values)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_node n = {.lease_id = lease, .registered_ms = 5, .disk_free = 100, .load = 2,
                   .segments = 4, .upload_segments = 1, .upload_bytes = 4096,
                   .upload_lag_ms = 1500};
    snprintf(n.id, sizeof n.id, "ls-1");
    snprintf(n.kind, sizeof n.kind, "logstore");
    snprintf(n.addr, sizeof n.addr, "h:1");
    CHECK_OK(m->ops->node_put(m, &n));
    meta_node g;
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(g.segments == 4 && g.upload_segments == 1 && g.upload_bytes == 4096 &&
          g.upload_lag_ms == 1500);
    /* Format 2: 02 4e, registered_ms 5, the lease, disk_free 100, load 2,
     * kind "logstore", no zone, addr "h:1". */
    char sql[512];
    uint8_t v[META_NODE_VALUE_MAX];
    meta_node old = n;
    old.segments = old.upload_segments = old.upload_bytes = old.upload_lag_ms = 0;
    size_t len = meta_node_encode(&old, v);
    REQUIRE(v[0] == 2);
    int o = snprintf(sql, sizeof sql, "UPDATE nodes SET value = x'");
    for (size_t i = 0; i < len; i++)
        o += snprintf(sql + o, sizeof sql - (size_t)o, "%02x", v[i]);
    snprintf(sql + o, sizeof sql - (size_t)o, "'");
    REQUIRE(raw_exec(path, sql) == SQLITE_OK);
    memset(&g, 0xab, sizeof g);
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(g.disk_free == 100 && g.load == 2 && g.segments == 0 && g.upload_segments == 0 &&
          g.upload_bytes == 0 && g.upload_lag_ms == 0 && strcmp(g.addr, "h:1") == 0);
    /* Format 3 with upload_bytes -1. */
    len = meta_node_encode(&n, v);
    REQUIRE(v[0] == 3);
    meta_le64_put(v + 50, (uint64_t)-1);
    o = snprintf(sql, sizeof sql, "UPDATE nodes SET value = x'");
    for (size_t i = 0; i < len; i++)
        o += snprintf(sql + o, sizeof sql - (size_t)o, "%02x", v[i]);
    snprintf(sql + o, sizeof sql - (size_t)o, "'");
    REQUIRE(raw_exec(path, sql) == SQLITE_OK);
    CHECK_RC(WP_ECORRUPT, m->ops->node_get(m, "ls-1", &g));
    CHECK(strstr(wp_errmsg(), "ls-1") != NULL);
    meta_node *ns = (meta_node *)1;
    size_t cnt = 7;
    CHECK_RC(WP_ECORRUPT, m->ops->node_list(m, "", &ns, &cnt));
    CHECK(ns == NULL && cnt == 0);
    CHECK_OK(m->ops->node_put(m, &n)); /* a put replaces it */
    CHECK_OK(m->ops->node_get(m, "ls-1", &g));
    CHECK(g.upload_bytes == 4096);
    m->ops->close(m);
}

/* A file made before upload claims: it has no claims table; opening adds
 * it (and its index), and claims work. */
TEST(sq_claims_table_added)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "old", 1, &l));
    meta_seg s;
    memset(&s, 0, sizeof s);
    s.log_id = l.log_id;
    s.last_entry_id = -1;
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    m->ops->close(m);
    REQUIRE(raw_exec(path, "DROP TABLE claims") == SQLITE_OK);
    CHECK(raw_i64(path, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'claims%'") == 0);
    m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    CHECK(raw_i64(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('claims', "
                        "'claims_lease')") == 2);
    CHECK(raw_i64(path, "SELECT value FROM kv WHERE key = 'version'") == 1);
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_claim c = {.log_id = l.log_id, .seg_id = 0, .lease_id = lease, .claimed_ms = 1,
                    .attempt = 1};
    snprintf(c.node_id, sizeof c.node_id, "ls-1");
    CHECK_OK(m->ops->claim_create(m, &c));
    meta_claim g;
    CHECK_OK(m->ops->claim_get(m, l.log_id, 0, &g));
    CHECK(g.rev == c.rev && strcmp(g.node_id, "ls-1") == 0);
    m->ops->close(m);
}

/* Bad claim rows are WP_ECORRUPT naming the claim, never a crash or a
 * claim read as something else. */
TEST(sq_corrupt_claims)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "c", 1, &l));
    REQUIRE(l.log_id == 1);
    meta_seg s;
    memset(&s, 0, sizeof s);
    s.log_id = l.log_id;
    s.last_entry_id = -1;
    CHECK_OK(m->ops->seg_create(m, &l, &s));
    int64_t lease = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    meta_claim c = {.log_id = 1, .seg_id = 0, .lease_id = lease, .claimed_ms = 1000,
                    .attempt = 1};
    snprintf(c.node_id, sizeof c.node_id, "ls-1");
    CHECK_OK(m->ops->claim_create(m, &c));
    char good[2 * META_CLAIM_VALUE_MAX + 1];
    raw_text(path, "SELECT hex(value) FROM claims", good, sizeof good);
    CHECK(strlen(good) == 2 * 62);

    /* Each statement breaks the row one way; the next restores it. */
    int64_t other = 0; /* a live lease the value does not name */
    CHECK_OK(m->ops->lease_grant(m, 60000, &other));
    char lease_sql[128];
    snprintf(lease_sql, sizeof lease_sql, "UPDATE claims SET lease_id = %lld", (long long)other);
    const char *const breaks[] = {
        "UPDATE claims SET value = x'0143'",               /* too short */
        "UPDATE claims SET value = 'text'",                /* not a blob */
        "UPDATE claims SET value = x''",                   /* empty */
        "UPDATE claims SET value = x'02' || substr(value, 2)", /* unknown format */
        "UPDATE claims SET value = substr(value, 1, 1) || x'4e' || substr(value, 3)", /* kind */
        "UPDATE claims SET value = value || x'20'",        /* a space in the node id */
        "UPDATE claims SET value = substr(value, 1, 58)",  /* no node id */
        "UPDATE claims SET value = substr(value, 1, 10) || x'0500000000000000' || "
        "substr(value, 19)",                               /* seg_id 5 under key 0 */
        "UPDATE claims SET value = substr(value, 1, 34) || x'0000000000000000' || "
        "substr(value, 43)",                               /* attempt 0 */
        "UPDATE claims SET value = substr(value, 1, 26) || x'ffffffffffffffff' || "
        "substr(value, 35)",                               /* claimed_ms -1 */
        lease_sql,                                         /* lease differs from the value */
        "UPDATE claims SET rev = 0",
    };
    char restore[2 * META_CLAIM_VALUE_MAX + 160];
    snprintf(restore, sizeof restore,
             "UPDATE claims SET value = x'%s', lease_id = %lld, rev = %lld", good,
             (long long)lease, (long long)c.rev);
    for (size_t i = 0; i < sizeof breaks / sizeof *breaks; i++) {
        REQUIRE(raw_exec(path, breaks[i]) == SQLITE_OK);
        meta_claim g;
        int rc = m->ops->claim_get(m, 1, 0, &g);
        if (rc != WP_ECORRUPT)
            fprintf(stderr, "  case %zu (%s): %d %s\n", i, breaks[i], rc, wp_errmsg());
        CHECK(rc == WP_ECORRUPT);
        CHECK(strstr(wp_errmsg(), "claim 1/0") != NULL); /* names the claim (its key) */
        meta_claim *cs = (meta_claim *)1;
        size_t n = 7;
        CHECK_RC(WP_ECORRUPT, m->ops->claim_list(m, 0, &cs, &n));
        CHECK(cs == NULL && n == 0);
        /* A create meets the corrupt row too, instead of replacing it. */
        meta_claim again = c;
        CHECK_RC(WP_ECORRUPT, m->ops->claim_create(m, &again));
        REQUIRE(raw_exec(path, restore) == SQLITE_OK);
        CHECK_OK(m->ops->claim_get(m, 1, 0, &g));
        CHECK(g.rev == c.rev && g.lease_id == lease && strcmp(g.node_id, "ls-1") == 0);
    }
    m->ops->close(m);
}

/* The claim value codec shared by both backends (docs/metadata.md §5.2):
 * the documented example, a round trip, bad bytes refused. */
TEST(claim_value_codec)
{
    meta_claim c = {.log_id = 7, .seg_id = 3, .lease_id = 5, .claimed_ms = 1000, .attempt = 1};
    snprintf(c.node_id, sizeof c.node_id, "ls-1");
    uint8_t b[META_CLAIM_VALUE_MAX];
    size_t len = meta_claim_encode(&c, NULL, b);
    static const uint8_t doc[] = {
        0x01, 0x43, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0,
        0xe8, 0x03, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x6c, 0x73, 0x2d, 0x31};
    CHECK(len == sizeof doc && len == 62);
    CHECK(memcmp(b, doc, sizeof doc) == 0);
    meta_claim d;
    memset(&d, 0x5a, sizeof d);
    d.rev = 99;
    CHECK(meta_claim_decode(b, len, &d) == NULL);
    CHECK(d.log_id == 7 && d.seg_id == 3 && d.lease_id == 5 && d.claimed_ms == 1000 &&
          d.attempt == 1 && strcmp(d.node_id, "ls-1") == 0 && d.rev == 99);
    /* The tag is carried, not interpreted. */
    uint8_t tag[META_CLAIM_TAG_LEN];
    memset(tag, 0xee, sizeof tag);
    len = meta_claim_encode(&c, tag, b);
    CHECK(memcmp(b + META_CLAIM_TAG_OFF, tag, sizeof tag) == 0);
    CHECK(meta_claim_decode(b, len, &d) == NULL && strcmp(d.node_id, "ls-1") == 0);
    /* The longest node id. */
    meta_claim lng = c;
    memset(lng.node_id, 'n', WP_NODE_ID_MAX);
    lng.node_id[WP_NODE_ID_MAX] = '\0';
    len = meta_claim_encode(&lng, NULL, b);
    CHECK(len == META_CLAIM_VALUE_MAX);
    CHECK(meta_claim_decode(b, len, &d) == NULL && strlen(d.node_id) == WP_NODE_ID_MAX);
    /* Refused: every cut short of a node id, one byte too many, a bad
     * format, kind or id byte, fields out of range. */
    len = meta_claim_encode(&c, NULL, b);
    for (size_t cut = 0; cut < META_CLAIM_VALUE_MIN; cut++)
        CHECK(meta_claim_decode(b, cut, &d) != NULL);
    uint8_t big[META_CLAIM_VALUE_MAX + 1];
    memcpy(big, b, len);
    memset(big + len, 'x', sizeof big - len);
    CHECK(meta_claim_decode(big, sizeof big, &d) != NULL);
    static const struct {
        size_t off;
        uint8_t v;
    } bad[] = {{0, 2}, {1, 'N'}, {59, '/'}, {61, 0}, {9, 0x80}, {2, 0}, {17, 0x80},
               {18, 0}, {25, 0x80}, {33, 0x80}, {34, 0}, {41, 0x80}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t x[META_CLAIM_VALUE_MAX];
        memcpy(x, b, len);
        x[bad[i].off] = bad[i].v;
        if (meta_claim_decode(x, len, &d) == NULL)
            fprintf(stderr, "  case %zu accepted\n", i);
        CHECK(meta_claim_decode(x, len, &d) != NULL);
    }
}

/* A file made before generic records: it has no records table; opening
 * adds it (and its index), and records work and persist. */
TEST(sq_records_table_added)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    CHECK(raw_i64(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('records', "
                        "'records_lease')") == 2);
    meta_log l;
    CHECK_OK(m->ops->log_create(m, "old", 1, &l));
    m->ops->close(m);
    REQUIRE(raw_exec(path, "DROP TABLE records") == SQLITE_OK);
    CHECK(raw_i64(path, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'records%'") == 0);
    m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    CHECK(raw_i64(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('records', "
                        "'records_lease')") == 2);
    CHECK(raw_i64(path, "SELECT value FROM kv WHERE key = 'version'") == 1);
    int64_t rev = 0;
    CHECK_OK(m->ops->kv_put(m, "stream/coord", "\0x", 2, 0, 0, &rev));
    CHECK(rev > l.rev);
    m->ops->close(m);
    m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    meta_kv g;
    CHECK_OK(m->ops->kv_get(m, "stream/coord", &g));
    CHECK(g.len == 2 && memcmp(g.value, "\0x", 2) == 0 && g.rev == rev && g.create_rev == rev);
    meta_kv_free(&g);
    CHECK(raw_i64(path, "SELECT typeof(value) = 'blob' FROM records") == 1);
    m->ops->close(m);
}

/* Bad record rows are WP_ECORRUPT naming the record's key, from get, list
 * and the writes that read the row first; never a crash. */
TEST(sq_corrupt_records)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    int64_t lease = 0, rev = 0;
    CHECK_OK(m->ops->lease_grant(m, 60000, &lease));
    CHECK_OK(m->ops->kv_put(m, "c/k", "good", 4, 0, lease, &rev));
    const char *const breaks[] = {
        "UPDATE records SET value = 'text'",                 /* not a blob */
        "UPDATE records SET value = 5",                      /* not a blob */
        "UPDATE records SET value = zeroblob(65537)",        /* too long */
        "UPDATE records SET rev = 0",
        "UPDATE records SET rev = 'x'",
        "UPDATE records SET create_rev = 0",
        "UPDATE records SET create_rev = rev + 1",           /* created after its last write */
        "UPDATE records SET lease_id = 'x'",
        "UPDATE records SET lease_id = -1",
    };
    char restore[256];
    snprintf(restore, sizeof restore,
             "UPDATE records SET value = x'676f6f64', lease_id = %lld, rev = %lld, "
             "create_rev = %lld", (long long)lease, (long long)rev, (long long)rev);
    for (size_t i = 0; i < sizeof breaks / sizeof *breaks; i++) {
        REQUIRE(raw_exec(path, breaks[i]) == SQLITE_OK);
        meta_kv g;
        int rc = m->ops->kv_get(m, "c/k", &g);
        if (rc != WP_ECORRUPT || !strstr(wp_errmsg(), "kv 'c/k'"))
            fprintf(stderr, "  case %zu (%s): %d %s\n", i, breaks[i], rc, wp_errmsg());
        CHECK(rc == WP_ECORRUPT);
        CHECK(strstr(wp_errmsg(), "kv 'c/k'") != NULL); /* names the record */
        meta_kv *kvs = (meta_kv *)1;
        size_t n = 7;
        CHECK_RC(WP_ECORRUPT, m->ops->kv_list(m, "c/", &kvs, &n));
        CHECK(kvs == NULL && n == 0);
        CHECK_RC(WP_ECORRUPT, m->ops->kv_put(m, "c/k", "x", 1, -1, 0, NULL));
        CHECK_RC(WP_ECORRUPT, m->ops->kv_delete(m, "c/k", 0));
        REQUIRE(raw_exec(path, restore) == SQLITE_OK);
        CHECK_OK(m->ops->kv_get(m, "c/k", &g));
        CHECK(g.len == 4 && memcmp(g.value, "good", 4) == 0 && g.rev == rev);
        meta_kv_free(&g);
    }
    /* Keys that break the rules (written behind the store's back): a list
     * that meets one fails naming it; one it does not meet is fine. */
    const char *const bad_keys[] = {"c/a//b", "c/trail/", "c/sp ace", "c/caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "INSERT INTO records VALUES ('%s', x'00', 0, %lld, %lld)",
                 bad_keys[i], (long long)rev, (long long)rev);
        REQUIRE(raw_exec(path, sql) == SQLITE_OK);
        meta_kv *kvs = (meta_kv *)1;
        size_t n = 7;
        CHECK_RC(WP_ECORRUPT, m->ops->kv_list(m, "", &kvs, &n));
        CHECK(strstr(wp_errmsg(), bad_keys[i]) != NULL);
        CHECK(kvs == NULL && n == 0);
        CHECK_OK(m->ops->kv_list(m, "c/k", &kvs, &n));
        CHECK(n == 1);
        meta_kv_free_list(kvs, n);
        REQUIRE(raw_exec(path, "DELETE FROM records WHERE key <> 'c/k'") == SQLITE_OK);
    }
    REQUIRE(raw_exec(path, "INSERT INTO records VALUES (x'632f62', x'00', 0, 5, 5)") ==
            SQLITE_OK); /* a blob key */
    meta_kv *kvs = (meta_kv *)1;
    size_t n = 7;
    CHECK_RC(WP_ECORRUPT, m->ops->kv_list(m, "", &kvs, &n));
    CHECK(kvs == NULL && n == 0);
    m->ops->close(m);
}

/* Lazy expiry as for nodes and claims: an expired record is invisible at
 * once, and the next lease or record write deletes its row; a revoke
 * deletes the lease's rows in its transaction. */
TEST(sq_kv_lease_rows)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    int64_t ls = 0, lr = 0;
    CHECK_OK(m->ops->lease_grant(m, 50, &ls));
    CHECK_OK(m->ops->lease_grant(m, 60000, &lr));
    CHECK_OK(m->ops->kv_put(m, "e/short", "x", 1, 0, ls, NULL));
    CHECK_OK(m->ops->kv_put(m, "e/revoked", "x", 1, 0, lr, NULL));
    CHECK_OK(m->ops->kv_put(m, "e/kept", "x", 1, 0, 0, NULL));
    CHECK(raw_i64(path, "SELECT count(*) FROM records") == 3);
    struct timespec ts = {0, 80 * 1000000L};
    nanosleep(&ts, NULL);
    meta_kv g;
    CHECK_RC(WP_ENOENT, m->ops->kv_get(m, "e/short", &g));
    CHECK(raw_i64(path, "SELECT count(*) FROM records") == 3); /* invisible, not yet deleted */
    CHECK_OK(m->ops->kv_put(m, "e/other", "x", 1, -1, 0, NULL));
    CHECK(raw_i64(path, "SELECT count(*) FROM records WHERE key = 'e/short'") == 0);
    CHECK_OK(m->ops->lease_revoke(m, lr));
    CHECK(raw_i64(path, "SELECT count(*) FROM records WHERE key = 'e/revoked'") == 0);
    CHECK(raw_i64(path, "SELECT count(*) FROM records") == 2);
    m->ops->close(m);
}

/* kv_list is bounded: META_KV_LIST_MAX records list, one more is
 * WP_ETOOBIG (and returns nothing). */
TEST(sq_kv_list_bound)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.db", test_tmpdir("meta_sqlite"));
    meta *m = NULL;
    REQUIRE(meta_sqlite_open(path, &m) == 0);
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO records SELECT printf('b/%%06d', i), x'', 0, 2, 2 FROM n",
             META_KV_LIST_MAX);
    REQUIRE(raw_exec(path, sql) == SQLITE_OK);
    meta_kv *kvs = NULL;
    size_t n = 0;
    CHECK_OK(m->ops->kv_list(m, "b/", &kvs, &n));
    CHECK(n == META_KV_LIST_MAX);
    if (n == META_KV_LIST_MAX)
        CHECK(strcmp(kvs[0].key, "b/000001") == 0 && strcmp(kvs[n - 1].key, "b/100000") == 0);
    meta_kv_free_list(kvs, n);
    CHECK_OK(m->ops->kv_put(m, "b/x", "", 0, 0, 0, NULL));
    kvs = (meta_kv *)1;
    n = 7;
    CHECK_RC(WP_ETOOBIG, m->ops->kv_list(m, "", &kvs, &n));
    CHECK(kvs == NULL && n == 0);
    CHECK_OK(m->ops->kv_list(m, "b/0", &kvs, &n)); /* a narrower prefix is fine */
    CHECK(n == 99999);
    meta_kv_free_list(kvs, n);
    m->ops->close(m);
}

int main(void)
{
    sq_store store;
    memset(&store, 0, sizeof store);
    meta_conformance_run(sq_open_fresh, sq_open_again, &store);
    RUN(sq_bad_args);
    RUN(sq_garbage_file);
    RUN(sq_foreign_database);
    RUN(sq_missing_dir);
    RUN(sq_permissions);
    RUN(sq_schema_version);
    RUN(sq_reopen_persistence);
    RUN(sq_placement_column_added);
    RUN(sq_concurrent_first_open);
    RUN(sq_corrupt_rows);
    RUN(sq_busy_unavailable);
    RUN(node_value_codec);
    RUN(sq_node_values);
    RUN(sq_claims_table_added);
    RUN(sq_corrupt_claims);
    RUN(claim_value_codec);
    RUN(sq_records_table_added);
    RUN(sq_corrupt_records);
    RUN(sq_kv_lease_rows);
    RUN(sq_kv_list_bound);
    return test_done();
}
