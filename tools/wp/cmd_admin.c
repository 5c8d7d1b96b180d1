/* cmd_admin.c — wp truncate | segments | verify | compact. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const LOG_NAME[] = {"log NAME"};

int cmd_truncate(cli *c, int argc, char **argv)
{
    static const char usage[] = "wp truncate NAME S:E";
    static const char *const names[] = {"log NAME", "id S:E"};
    const char *pos[2] = {NULL, NULL};
    wp_msg_id upto;
    wp_log *log = NULL;
    int st = cli_parse(usage, argc, argv, NULL, pos, 2, 2, names, NULL);
    if (st)
        return st;
    if (wp_msg_id_parse(pos[1], &upto) != WP_OK)
        return usage_err(usage, "bad id '%s' (want S:E, non-negative)", pos[1]);
    if ((st = cli_open_log(c, pos[0], &log)))
        return st;
    int rc = wp_log_truncate(log, upto);
    wp_log_close(log);
    return rc ? fail(rc, "truncating '%s' at %s", pos[0], pos[1]) : 0;
}

/* Longest location text: "replicas " and a placement's replicas, or the
 * servers of quorum.nodes (at most 1279 bytes). */
#define LOCATION_MAX (16 + 1280)
_Static_assert(LOCATION_MAX > 16 + WP_PLACEMENT_MAX, "a placement fits");

/* Appends text to buf[cap] at *o, as far as it fits. */
static void put_at(char *buf, size_t cap, size_t *o, const char *text, size_t len)
{
    size_t room = cap - 1 - *o; /* *o < cap always */
    len = len < room ? len : room;
    memcpy(buf + *o, text, len);
    *o += len;
    buf[*o] = '\0';
}

/* "replicas " and the replicas of a placement ("A:" then comma-separated
 * "<node_id>@<host:port>" or "<host:port>"; docs/metadata.md §3.2): each
 * node id, or host:port when there is none. */
static const char *placement_location(const char *placement, char *buf, size_t cap)
{
    const char *list = strchr(placement, ':');
    list = list ? list + 1 : placement;
    size_t o = 0;
    put_at(buf, cap, &o, "replicas ", 9);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ","), at = strcspn(p, "@");
        if (p != list)
            put_at(buf, cap, &o, ",", 1);
        put_at(buf, cap, &o, p, at < len ? at : len); /* the id before '@', else host:port */
        p += len + (p[len] == ',');
    }
    return buf;
}

/* A quorum segment from before placements: "replicas " and the first
 * quorum.write servers of quorum.nodes (what the storage uses for it);
 * "-" if it lists fewer. */
static const char *static_location(const wp_config *cfg, char *buf, size_t cap)
{
    char nodes[1280] = "", w[16] = "";
    wp_config_get(cfg, "quorum.nodes", nodes, sizeof nodes);
    wp_config_get(cfg, "quorum.write", w, sizeof w);
    int want = atoi(w), have = 0;
    size_t o = 0;
    put_at(buf, cap, &o, "replicas ", 9);
    for (char *save = NULL, *t = strtok_r(nodes, ",", &save); t && have < want;
         t = strtok_r(NULL, ",", &save), have++) {
        if (have)
            put_at(buf, cap, &o, ",", 1);
        put_at(buf, cap, &o, t, strlen(t));
    }
    return have == want ? buf : "-";
}

/* Where a segment's data is: its replicas (a placement, or storage.type
 * quorum) while ACTIVE or COMPLETED, object storage once SEALED (or on
 * storage.type s3), else the configured storage type (local). */
static const char *seg_location(const wp_config *cfg, const wp_segment_info *s,
                                const char *placement, char *buf, size_t cap)
{
    char type[32] = "";
    wp_config_get(cfg, "storage.type", type, sizeof type);
    bool replicated = placement[0] || strcmp(type, "quorum") == 0;
    if (s->state == WP_SEG_SEALED || (!replicated && strcmp(type, "s3") == 0))
        return "object storage";
    if (!replicated) {
        snprintf(buf, cap, "%s", type[0] ? type : "-");
        return buf;
    }
    if (s->state == WP_SEG_TRUNCATED) /* still on the replicas, or uploaded: unknown */
        return "-";
    return placement[0] ? placement_location(placement, buf, cap) : static_location(cfg, buf, cap);
}

int cmd_segments(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    wp_segment_info *segs = NULL;
    wp_segment_placement *pl = NULL;
    size_t n = 0, np = 0;
    int st = cli_parse("wp segments NAME", argc, argv, NULL, &name, 1, 1, LOG_NAME, NULL);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    int rc = wp_log_segments(log, &segs, &n);
    if (rc == 0 && (rc = wp_log_placements(log, &pl, &np)))
        free(segs);
    wp_log_close(log);
    if (rc)
        return fail(rc, "listing the segments of '%s'", name);
    printf("%-8s %-10s %12s %14s %8s %-24s %-24s %s\n", "id", "state", "last_entry", "bytes",
           "epoch", "created", "completed", "location");
    for (size_t i = 0, j = 0; i < n; i++) {
        const wp_segment_info *s = &segs[i];
        char t1[TIME_STR_MAX], t2[TIME_STR_MAX], loc[LOCATION_MAX];
        while (j < np && pl[j].segment_id < s->segment_id) /* both in id order */
            j++;
        const char *p = j < np && pl[j].segment_id == s->segment_id ? pl[j].placement : "";
        printf("%-8" PRId64 " %-10s %12" PRId64 " %14" PRId64 " %8" PRId64 " %-24s %-24s %s\n",
               s->segment_id, wp_seg_state_name(s->state), s->last_entry_id, s->bytes,
               s->writer_epoch, format_time_ms(s->created_ms, t1),
               format_time_ms(s->completed_ms, t2), seg_location(c->cfg, s, p, loc, sizeof loc));
    }
    free(segs);
    free(pl);
    return finish_stdout();
}

static void verify_problem(void *arg, int64_t segment_id, const char *problem)
{
    int64_t *n = arg;
    (*n)++;
    printf("problem: segment %" PRId64 ": %s\n", segment_id, problem);
}

int cmd_verify(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    int64_t checked = 0, problems = 0;
    int st = cli_parse("wp verify NAME", argc, argv, NULL, &name, 1, 1, LOG_NAME, NULL);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    int rc = wp_log_verify(log, verify_problem, &problems, &checked);
    if (rc)
        st = fail(rc, "verifying '%s' (%" PRId64 " problem(s), %" PRId64 " entries checked)",
                  name, problems, checked);
    else
        printf("ok: %" PRId64 " entries checked\n", checked);
    wp_log_close(log);
    if (finish_stdout())
        st = EXIT_FAILURE;
    return st;
}

int cmd_compact(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    int st = cli_parse("wp compact NAME", argc, argv, NULL, &name, 1, 1, LOG_NAME, NULL);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    wp_compact_info info;
    int rc = wp_log_compact(log, &info);
    if (rc)
        st = fail(rc, "compacting '%s'", name);
    else
        printf("ok: %" PRId64 " segment(s) sealed, %" PRId64 " PUT(s) of %" PRId64 " bytes\n",
               info.segments_sealed, info.puts, info.put_bytes);
    wp_log_close(log);
    if (finish_stdout())
        st = EXIT_FAILURE;
    return st;
}
