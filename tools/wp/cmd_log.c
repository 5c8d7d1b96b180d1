/* cmd_log.c — wp log create | delete | list | info. */
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"

static const char *const LOG_NAME[] = {"log NAME"};

/* The one positional NAME of a command. */
static int one_name(const char *usage, int argc, char **argv, const char **name)
{
    return cli_parse(usage, argc, argv, NULL, name, 1, 1, LOG_NAME, NULL);
}

int cmd_log_create(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int st = one_name("wp log create NAME", argc, argv, &name);
    if (st || (st = check_name(name)) || (st = cli_open_client(c)))
        return st;
    int rc = wp_log_create(c->client, name);
    return rc ? fail(rc, "creating log '%s'", name) : 0;
}

int cmd_log_delete(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    int st = one_name("wp log delete NAME", argc, argv, &name);
    if (st || (st = check_name(name)) || (st = cli_open_client(c)))
        return st;
    int rc = wp_log_delete(c->client, name);
    return rc ? fail(rc, "deleting log '%s'", name) : 0;
}

int cmd_log_list(cli *c, int argc, char **argv)
{
    const char *prefix = "";
    int st = cli_parse("wp log list [PREFIX]", argc, argv, NULL, &prefix, 0, 1, NULL, NULL);
    if (st || (st = cli_open_client(c)))
        return st;
    char **names = NULL;
    size_t n = 0;
    int rc = wp_log_list(c->client, prefix, &names, &n);
    if (rc)
        return fail(rc, "listing logs");
    for (size_t i = 0; i < n; i++)
        printf("%s\n", names[i]);
    wp_free_names(names, n);
    return finish_stdout();
}

int cmd_log_info(cli *c, int argc, char **argv)
{
    const char *name = NULL;
    wp_log *log = NULL;
    wp_log_info in;
    int st = one_name("wp log info NAME", argc, argv, &name);
    if (st || (st = cli_open_log(c, name, &log)))
        return st;
    int rc = wp_log_stat(log, &in);
    wp_log_close(log);
    if (rc)
        return fail(rc, "reading the metadata of log '%s'", name);
    char t[TIME_STR_MAX], a[WP_MSG_ID_STR_MAX], b[WP_MSG_ID_STR_MAX];
    printf("name: %s\nid: %" PRId64 "\nwriter_epoch: %" PRId64 "\ntruncated_to: %s\n"
           "created: %s\nsegments: %" PRId64 "\nbytes: %" PRId64 "\nlast_id: %s\n",
           in.name, in.log_id, in.writer_epoch, format_id(in.truncated_to, a),
           format_time_ms(in.created_ms, t), in.n_segments, in.bytes, format_id(in.last_id, b));
    return finish_stdout();
}
