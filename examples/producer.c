/* producer — appends each line of its standard input to a Woodpecker log,
 * one entry per line, and exits once every entry is durable.
 *
 *   producer DATA_DIR LOG < lines
 *
 * Embedded mode: the log lives in DATA_DIR (segments plus the SQLite
 * metadata file); no server runs. WP_<SECTION>__<KEY> environment variables
 * override the configuration (e.g. WP_FLUSH__MAX_BYTES=1MiB). Uses only
 * <woodpecker.h>; build with `make` (pkg-config) or CMake (find_package).
 * consumer.c is the other half. */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <woodpecker.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int failures;
static atomic_llong acked;

/* Runs on a writer thread once the entry is durable (rc 0) or failed, in
 * id order. */
static void on_ack(void *arg, int rc, wp_msg_id id)
{
    (void)arg;
    (void)id;
    if (rc != 0)
        atomic_fetch_add(&failures, 1);
    else
        atomic_fetch_add(&acked, 1);
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "producer: %s: %s (%s)\n", what, wp_strerror(rc), wp_errmsg());
    return 1;
}

/* Creates the log unless it exists, then opens it. */
static int open_log(wp_client *client, const char *name, wp_log **log)
{
    int rc = wp_log_create(client, name);
    if (rc != 0 && rc != WP_EEXIST)
        return rc;
    return wp_log_open(client, name, log);
}

/* Appends every line of stdin (without its newline) without waiting for
 * each: entries are buffered and flushed in blocks (group commit). */
static int append_lines(wp_writer *writer, long long *sent)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            len--;
        rc = wp_writer_append_async(writer, line, (size_t)len, on_ack, NULL);
        if (rc == 0)
            (*sent)++;
    }
    free(line);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: producer DATA_DIR LOG < lines\n");
        return 2;
    }
    wp_config *cfg;
    wp_client *client;
    wp_log *log;
    wp_writer *writer;
    int rc, status = 1;

    if ((rc = wp_config_default(&cfg)))
        return fail("config", rc);
    if ((rc = wp_config_set(cfg, "storage.root", argv[1])) || (rc = wp_config_apply_env(cfg))) {
        wp_config_free(cfg);
        return fail("config", rc);
    }
    rc = wp_client_open(cfg, &client); /* the client keeps its own copy */
    wp_config_free(cfg);
    if (rc)
        return fail("open client", rc);
    if ((rc = open_log(client, argv[2], &log))) {
        fail(argv[2], rc);
        goto out_close_client;
    }
    if ((rc = wp_writer_open(log, &writer))) { /* fences any older writer */
        fail("open writer", rc);
        goto out_close_log;
    }

    long long sent = 0;
    if ((rc = append_lines(writer, &sent)))
        fail("append", rc);
    int flush_rc = wp_writer_flush(writer); /* waits for every ack */
    if (flush_rc)
        fail("flush", flush_rc);
    char last[WP_MSG_ID_STR_MAX];
    wp_msg_id_format(wp_writer_lac(writer), last);
    int close_rc = wp_writer_close(writer); /* frees the writer in any case */
    if (close_rc)
        fail("close writer", close_rc);
    if (rc == 0)
        rc = flush_rc ? flush_rc : close_rc;
    if (rc == 0 && atomic_load(&failures) == 0) {
        fprintf(stderr, "producer: %lld entries durable in %s, last id %s\n",
                (long long)atomic_load(&acked), argv[2], sent ? last : "-");
        status = 0;
    }
out_close_log:
    wp_log_close(log);
out_close_client:
    wp_client_close(client);
    return status;
}
