/* cmd_admin.c — wp truncate | segments | verify | compact. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

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

int cmd_segments(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    wp_segment_info *segs = NULL;
    size_t n = 0;
    int st = cli_parse("wp segments NAME", argc, argv, NULL, &name, 1, 1, LOG_NAME, NULL);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    int rc = wp_log_segments(log, &segs, &n);
    wp_log_close(log);
    if (rc)
        return fail(rc, "listing the segments of '%s'", name);
    printf("%-8s %-10s %12s %14s %8s %-24s %s\n", "id", "state", "last_entry", "bytes",
           "epoch", "created", "completed");
    for (size_t i = 0; i < n; i++) {
        const wp_segment_info *s = &segs[i];
        char t1[TIME_STR_MAX], t2[TIME_STR_MAX];
        printf("%-8" PRId64 " %-10s %12" PRId64 " %14" PRId64 " %8" PRId64 " %-24s %s\n",
               s->segment_id, wp_seg_state_name(s->state), s->last_entry_id, s->bytes,
               s->writer_epoch, format_time_ms(s->created_ms, t1),
               format_time_ms(s->completed_ms, t2));
    }
    free(segs);
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
