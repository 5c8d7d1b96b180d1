/* open.c — storage_open: the one place that maps cfg->storage_type to a
 * storage backend (code above the interface never compares type names). */
#include <string.h>

#include "base/err.h"
#include "config/config.h"
#include "storage/quorum.h"
#include "storage/s3.h"
#include "storage/storage.h"

int storage_open(const struct wp_config *cfg, const wp__logger *logger, struct meta *m,
                 storage **out)
{
    int rc;
    if (strcmp(cfg->storage_type, "s3") == 0)
        rc = storage_s3_open(cfg, logger, out);
    else if (strcmp(cfg->storage_type, "quorum") == 0)
        rc = storage_quorum_open(cfg, logger, m, out);
    else if (strcmp(cfg->storage_type, "local") == 0)
        rc = storage_local_open(cfg->storage_root, logger, out);
    else
        return wp__err(WP_EINVAL, "storage.type '%s': no such storage", cfg->storage_type);
    if (rc == WP_OK)
        (*out)->meta = m;
    return rc;
}
