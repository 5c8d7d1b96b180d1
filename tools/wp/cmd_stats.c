/* cmd_stats.c — wp stats: the metrics of an embedded client (docs/configuration.md "Metrics"). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int cmd_stats(cli *c, int argc, char **argv)
{
    int st = cli_parse("wp stats", argc, argv, NULL, NULL, 0, 0, NULL, NULL);
    if (st || (st = cli_open_client(c)))
        return st;
    char *text = NULL;
    size_t len = 0;
    int rc = wp_client_metrics_text(c->client, &text, &len);
    if (rc)
        return fail(rc, "reading the metrics");
    fwrite(text, 1, len, stdout);
    free(text);
    return finish_stdout() ? EXIT_FAILURE : EXIT_SUCCESS;
}
