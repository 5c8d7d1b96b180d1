/* coord.h — the streaming coordinator (docs/streaming.md §3): one active
 * at a time, elected through the metadata record stream/coord (create-only
 * under its lease); the active one assigns channels to the live streaming
 * nodes, bumping each channel's term on every move, and rebalances when
 * nodes join. */
#ifndef WP_STREAM_COORD_H
#define WP_STREAM_COORD_H

#include <stdbool.h>

#include "base/err.h"
#include "config/config.h"

typedef struct stream_coord stream_coord;

/* Opens the metadata store cfg names and starts the thread (standby until
 * elected). cfg->node_id names it. cfg must outlive it. */
int stream_coord_start(const wp_config *cfg, const wp__logger *lg, stream_coord **out);
/* Whether it is the active coordinator now. */
bool stream_coord_active(stream_coord *c);
/* Stops the thread; if active, deletes stream/coord so a standby takes
 * over at once. */
void stream_coord_stop(stream_coord *c);

#endif
