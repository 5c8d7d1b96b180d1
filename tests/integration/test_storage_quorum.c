/* test_storage_quorum.c — the entry-level storage conformance suite on the
 * quorum backend (storage.type quorum: 3 LogStore servers, real processes
 * on 127.0.0.1, fresh ones for every test; tests/support/quorum_env.h),
 * then what is specific to it: the bytes of a segment are not served, a
 * deleted segment's id is never used again, and a fence of a segment
 * never written is kept (docs/protocol.md §5.3, §5.7). */
#include "test.h"

#include <signal.h>

#include "conformance/storage_entries_conformance.h"
#include "support/quorum_env.h"

static storage *open_fresh(void *arg)
{
    (void)arg;
    const char *root = test_tmpdir("stquorum");
    char nodes[256];
    wp_config *cfg = NULL;
    storage *s = NULL;
    if (quorum_env_nodes(root, nodes, sizeof nodes) != 0 || wp_config_default(&cfg) != 0)
        return NULL;
    if (wp_config_set(cfg, "storage.root", root) || wp_config_set(cfg, "storage.type", "quorum") ||
        wp_config_set(cfg, "quorum.nodes", nodes) || storage_open(cfg, NULL, NULL, &s))
        s = NULL;
    wp_config_free(cfg);
    return s;
}

/* Entries, not bytes: seg_read, seg_size and seg_list say so. */
TEST(bytes_not_served)
{
    storage *s = open_fresh(NULL);
    REQUIRE(s);
    se_writer w;
    CHECK_OK(se_create(s, 1, 0, 1, 1, &w));
    CHECK_OK(se_append(&w, 1, 3));
    st_reader *r = NULL;
    CHECK_OK(s->ops->seg_open_read(s, 1, 0, &r));
    if (r) {
        uint8_t buf[64];
        size_t got = 99;
        uint64_t size = 99;
        CHECK_RC(WP_ENOTSUP, s->ops->seg_read(r, 0, buf, sizeof buf, &got));
        CHECK(got == 0);
        CHECK_RC(WP_ENOTSUP, s->ops->seg_size(r, &size));
        s->ops->seg_reader_close(r);
    }
    int64_t *ids = NULL;
    size_t n = 99;
    CHECK_RC(WP_ENOTSUP, s->ops->seg_list(s, 1, &ids, &n));
    CHECK(n == 0);
    free(ids);
    CHECK(s->ops->seg_read_entries && s->ops->seg_recover);
    se_close(&w);
    s->ops->close(s);
}

/* A deleted segment keeps a tombstone on the replicas: a writer of any
 * epoch that creates it again is refused at its first entry (ids are
 * never used again, protocol §5.7), and so is a fence. */
TEST(deleted_id_stays_deleted)
{
    storage *s = open_fresh(NULL);
    REQUIRE(s);
    se_writer w;
    CHECK_OK(se_create(s, 2, 0, 1, 21, &w));
    CHECK_OK(se_append(&w, 1, 3));
    se_close(&w);
    CHECK_OK(s->ops->seg_delete(s, 2, 0));
    int rc = se_create(s, 2, 0, 9, 22, &w);
    if (rc == WP_OK)
        rc = se_append(&w, 1, 3);
    CHECK_RC(WP_EFENCED, rc);
    se_close(&w);
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 2, 0, 10));
    CHECK(se_gone(s, 2, 0));
    s->ops->close(s);
}

/* A segment placed on the replicas but never written (its writer died
 * before its first entry) is fenced all the same: the fence is recorded,
 * and the late writer is refused (protocol §5.3). */
TEST(fence_of_unwritten_segment_is_kept)
{
    storage *s = open_fresh(NULL);
    REQUIRE(s);
    se_writer w;
    CHECK_OK(se_create(s, 3, 0, 1, 31, &w)); /* nothing sent yet */
    CHECK_OK(s->ops->seg_fence(s, 3, 0, 2));
    CHECK_RC(WP_EFENCED, se_append(&w, 1, 3));
    se_close(&w);
    CHECK_RC(WP_EFENCED, s->ops->seg_fence(s, 3, 0, 1));
    CHECK(se_gone(s, 3, 0));
    s->ops->close(s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    storage_entries_conformance_run(open_fresh, NULL);
    RUN(bytes_not_served);
    RUN(deleted_id_stays_deleted);
    RUN(fence_of_unwritten_segment_is_kept);
    quorum_env_stop();
    return test_done();
}
