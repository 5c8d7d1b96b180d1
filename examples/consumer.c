/* consumer — tails a Woodpecker log from its first entry and prints each
 * entry's payload on a line, as producer.c appended them.
 *
 *   consumer DATA_DIR LOG [COUNT]
 *
 * Without COUNT it follows the log until interrupted (Ctrl-C); with COUNT it
 * exits after that many entries. It may start before the producer, even
 * before the log exists: a reader sees each entry once it is durable, also
 * when the writer is another process. Uses only <woodpecker.h>. */
#include <woodpecker.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "consumer: %s: %s (%s)\n", what, wp_strerror(rc), wp_errmsg());
    return 1;
}

/* Prints entries until `count` were printed (-1: until stopped). */
static int tail(wp_reader *reader, long long count)
{
    long long n = 0;
    while (!stop && (count < 0 || n < count)) {
        wp_entry e; /* owned by the reader, valid until its next call */
        int rc = wp_reader_next(reader, 500 /* ms */, &e);
        if (rc == WP_ETIMEDOUT)
            continue; /* nothing new yet: check `stop`, wait again */
        if (rc)
            return fail("read", rc);
        fwrite(e.data, 1, e.len, stdout);
        putchar('\n');
        n++;
    }
    fflush(stdout);
    return ferror(stdout) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: consumer DATA_DIR LOG [COUNT]\n");
        return 2;
    }
    long long count = argc == 4 ? atoll(argv[3]) : -1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    wp_config *cfg;
    wp_client *client;
    wp_log *log;
    wp_reader *reader;
    int rc, status = 1;

    if ((rc = wp_config_default(&cfg)))
        return fail("config", rc);
    if ((rc = wp_config_set(cfg, "storage.root", argv[1])) || (rc = wp_config_apply_env(cfg))) {
        wp_config_free(cfg);
        return fail("config", rc);
    }
    rc = wp_client_open(cfg, &client);
    wp_config_free(cfg);
    if (rc)
        return fail("open client", rc);
    rc = wp_log_create(client, argv[2]); /* the producer may not have yet */
    if ((rc == 0 || rc == WP_EEXIST) && (rc = wp_log_open(client, argv[2], &log)) == 0) {
        if ((rc = wp_reader_open(log, WP_EARLIEST, &reader)) == 0) {
            status = tail(reader, count);
            wp_reader_close(reader);
        } else {
            fail("open reader", rc);
        }
        wp_log_close(log);
    } else {
        fail(argv[2], rc);
    }
    wp_client_close(client);
    return status;
}
