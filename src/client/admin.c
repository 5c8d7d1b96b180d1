/* admin.c — what an operator reads about the fleet from the metadata
 * store: the live node registrations (wp_client_nodes) and where each
 * segment's replicas live (wp_log_placements). Used by `wp nodes` and
 * `wp segments`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

/* The public sizes are the metadata's bounds (include/woodpecker.h has no
 * internal header). */
_Static_assert(sizeof(((wp_node_info *)0)->id) == WP_NODE_ID_MAX + 1, "wp_node_info.id");
_Static_assert(sizeof(((wp_node_info *)0)->kind) == META_NODE_KIND_MAX + 1, "wp_node_info.kind");
_Static_assert(sizeof(((wp_node_info *)0)->addr) == META_NODE_ADDR_MAX + 1, "wp_node_info.addr");
_Static_assert(sizeof(((wp_node_info *)0)->zone) == META_NODE_ZONE_MAX + 1, "wp_node_info.zone");
_Static_assert(WP_PLACEMENT_MAX == META_SEG_PLACEMENT_MAX, "wp_segment_placement.placement");

int wp_client_nodes(wp_client *c, const char *kind, wp_node_info **out, size_t *n)
{
    if (!c || !out || !n)
        return wp__err(WP_EINVAL, "wp_client_nodes: NULL argument");
    *out = NULL;
    *n = 0;
    meta_node *ns = NULL;
    size_t cnt = 0;
    int rc = c->meta->ops->node_list(c->meta, kind ? kind : "", &ns, &cnt);
    if (rc)
        return rc;
    wp_node_info *info = calloc(cnt ? cnt : 1, sizeof *info);
    if (!info) {
        free(ns);
        return wp__err(WP_ENOMEM, "node list of %zu", cnt);
    }
    for (size_t i = 0; i < cnt; i++) {
        const meta_node *m = &ns[i];
        wp_node_info *d = &info[i];
        snprintf(d->id, sizeof d->id, "%s", m->id);
        snprintf(d->kind, sizeof d->kind, "%s", m->kind);
        snprintf(d->addr, sizeof d->addr, "%s", m->addr);
        snprintf(d->zone, sizeof d->zone, "%s", m->zone);
        d->registered_ms = m->registered_ms;
        d->disk_free = m->disk_free;
        d->load = m->load;
        d->segments = m->segments;
        d->upload_segments = m->upload_segments;
        d->upload_bytes = m->upload_bytes;
        d->upload_lag_ms = m->upload_lag_ms;
    }
    free(ns);
    *out = info;
    *n = cnt;
    return WP_OK;
}

int wp_log_placements(wp_log *l, wp_segment_placement **out, size_t *n)
{
    if (!l || !out || !n)
        return wp__err(WP_EINVAL, "wp_log_placements: NULL argument");
    *out = NULL;
    *n = 0;
    meta_seg *segs = NULL;
    size_t cnt = 0;
    int rc = l->c->meta->ops->seg_list(l->c->meta, l->log_id, &segs, &cnt);
    if (rc)
        return rc;
    wp_segment_placement *p = calloc(cnt ? cnt : 1, sizeof *p);
    if (!p) {
        free(segs);
        return wp__err(WP_ENOMEM, "placements of %zu segments", cnt);
    }
    for (size_t i = 0; i < cnt; i++) {
        p[i].segment_id = segs[i].seg_id;
        snprintf(p[i].placement, sizeof p[i].placement, "%s", segs[i].placement);
    }
    free(segs);
    *out = p;
    *n = cnt;
    return WP_OK;
}
