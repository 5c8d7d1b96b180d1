/* open.c — meta_open: the one place that maps cfg->meta_type to a
 * metadata backend (code above the interface never compares type names). */
#include <string.h>

#include "base/err.h"
#include "base/limits.h"
#include "config/config.h"
#include "meta/etcd.h"
#include "meta/meta.h"
#include "os/os.h"

int meta_open(const struct wp_config *cfg, meta **out)
{
    if (strcmp(cfg->meta_type, "etcd") == 0)
        return meta_etcd_open(cfg, out);
    if (strcmp(cfg->meta_type, "sqlite") != 0)
        return wp__err(WP_EINVAL, "meta.type '%s': no such metadata store", cfg->meta_type);
    int rc;
    if (!cfg->meta_path[0] && (rc = os_mkdir_p(cfg->storage_root))) /* default: under the root */
        return rc;
    char path[WP_PATH_MAX];
    return meta_sqlite_open(wp__config_meta_path(cfg, path, sizeof path), out);
}
