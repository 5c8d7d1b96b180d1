/* cmd_nodes.c — wp nodes: the live node registrations (LogStore and
 * streaming servers, docs/metadata.md §3.4) as a table, or as JSON. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char nodes_usage[] = "wp nodes [--kind KIND] [--json]";

/* Longest node kind (the metadata's bound, [a-z0-9_-]). */
#define NODE_KIND_MAX 31

enum { COL_ID, COL_KIND, COL_ADDR, COL_ZONE, COL_LOAD, COL_FREE, COL_SEGMENTS, COL_UPLOAD,
       COL_LAG, COL_UP, N_COLS };
/* Widest cell: an address (255 bytes) with its NUL. */
#define CELL_MAX 256

static const char *const col_names[N_COLS] = {"id",   "kind",     "addr",   "zone", "load",
                                              "free", "segments", "upload", "lag",  "up"};
static const bool col_right[N_COLS] = {[COL_LOAD] = true, [COL_FREE] = true,
                                       [COL_SEGMENTS] = true, [COL_UPLOAD] = true,
                                       [COL_LAG] = true, [COL_UP] = true};

typedef struct {
    char cell[N_COLS][CELL_MAX];
} row;

static int parse_kind(void *out, const char *v)
{
    size_t len = strlen(v);
    bool ok = len >= 1 && len <= NODE_KIND_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '_' ||
             v[i] == '-';
    if (!ok)
        return usage_err(nodes_usage, "--kind wants a node kind (1..%d bytes of [a-z0-9_-], "
                                      "e.g. logstore), got '%.64s'", NODE_KIND_MAX, v);
    *(const char **)out = v;
    return 0;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fill_row(const wp_node_info *n, int64_t now_ms, row *r)
{
    char a[AMOUNT_STR_MAX];
    snprintf(r->cell[COL_ID], CELL_MAX, "%s", n->id);
    snprintf(r->cell[COL_KIND], CELL_MAX, "%s", n->kind);
    snprintf(r->cell[COL_ADDR], CELL_MAX, "%s", n->addr);
    snprintf(r->cell[COL_ZONE], CELL_MAX, "%s", n->zone[0] ? n->zone : "-");
    snprintf(r->cell[COL_LOAD], CELL_MAX, "%" PRId64, n->load);
    snprintf(r->cell[COL_FREE], CELL_MAX, "%s", format_bytes(n->disk_free, a));
    snprintf(r->cell[COL_SEGMENTS], CELL_MAX, "%" PRId64, n->segments);
    snprintf(r->cell[COL_UPLOAD], CELL_MAX, "%" PRId64 " / %s", n->upload_segments,
             format_bytes(n->upload_bytes, a));
    snprintf(r->cell[COL_LAG], CELL_MAX, "%s",
             n->upload_lag_ms > 0 ? format_duration_ms(n->upload_lag_ms, a) : "-");
    snprintf(r->cell[COL_UP], CELL_MAX, "%s", format_duration_ms(now_ms - n->registered_ms, a));
}

static void print_row(const char *const cells[N_COLS], const size_t width[N_COLS])
{
    for (int k = 0; k < N_COLS; k++) {
        bool last = k == N_COLS - 1;
        if (col_right[k])
            printf("%*s", (int)width[k], cells[k]);
        else
            printf("%-*s", last ? 0 : (int)width[k], cells[k]);
        fputs(last ? "\n" : "  ", stdout);
    }
}

/* The table: one header line, one aligned line per node. */
static int print_table(const wp_node_info *ns, size_t n)
{
    row *rows = calloc(n, sizeof *rows);
    if (!rows)
        return fail_msg("out of memory (%zu nodes)", n);
    size_t width[N_COLS];
    for (int k = 0; k < N_COLS; k++)
        width[k] = strlen(col_names[k]);
    int64_t now_ms = wall_ms();
    for (size_t i = 0; i < n; i++) {
        fill_row(&ns[i], now_ms, &rows[i]);
        for (int k = 0; k < N_COLS; k++) {
            size_t len = strlen(rows[i].cell[k]);
            width[k] = len > width[k] ? len : width[k];
        }
    }
    print_row(col_names, width);
    for (size_t i = 0; i < n; i++) {
        const char *cells[N_COLS];
        for (int k = 0; k < N_COLS; k++)
            cells[k] = rows[i].cell[k];
        print_row(cells, width);
    }
    free(rows);
    return 0;
}

/* A JSON string of printable ASCII (what node records hold). */
static void put_json_ascii(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if (*s >= 0x20 && *s < 0x7f)
            putchar(*s);
        else
            printf("\\u%04x", (unsigned)(unsigned char)*s);
    }
    putchar('"');
}

/* --json: an array of objects with the raw figures (bytes, ms). */
static void print_json(const wp_node_info *ns, size_t n)
{
    int64_t now_ms = wall_ms();
    fputs("[", stdout);
    for (size_t i = 0; i < n; i++) {
        const wp_node_info *d = &ns[i];
        int64_t up_ms = now_ms > d->registered_ms ? now_ms - d->registered_ms : 0;
        fputs(i ? ",\n" : "\n", stdout);
        fputs("{\"id\":", stdout);
        put_json_ascii(d->id);
        fputs(",\"kind\":", stdout);
        put_json_ascii(d->kind);
        fputs(",\"addr\":", stdout);
        put_json_ascii(d->addr);
        fputs(",\"zone\":", stdout);
        put_json_ascii(d->zone);
        printf(",\"load\":%" PRId64 ",\"disk_free\":%" PRId64 ",\"segments\":%" PRId64
               ",\"upload_segments\":%" PRId64 ",\"upload_bytes\":%" PRId64
               ",\"upload_lag_ms\":%" PRId64 ",\"registered_ms\":%" PRId64 ",\"up_ms\":%" PRId64
               "}",
               d->load, d->disk_free, d->segments, d->upload_segments, d->upload_bytes,
               d->upload_lag_ms, d->registered_ms, up_ms);
    }
    fputs(n ? "\n]\n" : "]\n", stdout);
}

int cmd_nodes(cli *c, int argc, char **argv)
{
    const char *kind = "";
    bool json = false;
    const cli_opt opts[] = {
        {.name = "--kind", .kind = CLI_CALL, .out = &kind, .call = parse_kind,
         .want = "a node kind (e.g. logstore)"},
        {.name = "--json", .kind = CLI_FLAG, .out = &json},
        {0},
    };
    int st = cli_parse(nodes_usage, argc, argv, opts, NULL, 0, 0, NULL, NULL);
    if (st || (st = cli_open_client(c)))
        return st;
    wp_node_info *ns = NULL;
    size_t n = 0;
    int rc = wp_client_nodes(c->client, kind, &ns, &n);
    if (rc)
        return fail(rc, "listing the node registrations");
    if (json)
        print_json(ns, n);
    else if (n == 0)
        printf("no live nodes%s%s%s\n", *kind ? " of kind '" : "", kind, *kind ? "'" : "");
    else
        st = print_table(ns, n);
    free(ns);
    if (finish_stdout())
        st = EXIT_FAILURE;
    return st;
}
