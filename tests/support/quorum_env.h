/* quorum_env.h — the client tests on storage.type quorum (issue 10): with
 * WP_TEST_STORAGE=quorum in the environment (CTest sets it for the
 * `<test>@quorum` entries), test_client_open puts every client on 3
 * LogStore servers, real processes on 127.0.0.1 (logstore_proc.h).
 *
 * Log ids come from each client's metadata, so two metadata stores on the
 * same servers would hand out the same log id for different logs (and a
 * deleted log's tombstone is kept for good). The servers therefore belong
 * to one client data root at a time: they run with their data under
 * <root>/logstore/ and are started when the first client opens on that
 * root; when a client opens on another root, they are told to stop (they
 * exit in the background) and a new set starts under that root (on the
 * same data again when a root comes back). Clients in forked processes
 * use the servers of the process that started them. That process stops
 * them at exit; they also die with the thread that started them
 * (PR_SET_PDEATHSIG), so open the clients from the main thread. */
#ifndef WP_TEST_QUORUM_ENV_H
#define WP_TEST_QUORUM_ENV_H

#include <stdbool.h>
#include <stddef.h>

/* True when WP_TEST_STORAGE is "quorum". */
bool quorum_env_on(void);

/* The servers for clients rooted at `root`, started if needed; their
 * addresses, comma-separated, into nodes (the value of quorum.nodes).
 * 0, or -1 with the reason on stderr. */
int quorum_env_nodes(const char *root, char *nodes, size_t cap);

/* Kills server i (0..2) of the running set with SIGKILL (the process that
 * started them only). 0, or -1. */
int quorum_env_kill(int i);
/* Starts server i again, on its data and its address (quorum.nodes does
 * not change). 0, or -1 with the reason on stderr. */
int quorum_env_restart(int i);

/* Stops the servers this process started (also run at exit). */
void quorum_env_stop(void);

#endif
