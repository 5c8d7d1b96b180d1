/* limits.h — every bound in Woodpecker, in one place (see docs/configuration.md
 * for the configurable ones). Static asserts relate them. */
#ifndef WP_BASE_LIMITS_H
#define WP_BASE_LIMITS_H

#include <stdint.h>

#define WP_KiB (1024LL)
#define WP_MiB (1024LL * 1024)
#define WP_GiB (1024LL * 1024 * 1024)

/* Names. */
#define WP_LOG_NAME_MAX 200          /* bytes, [A-Za-z0-9._-/] */
#define WP_READER_NAME_MAX 128

/* Entries. */
#define WP_ENTRY_BYTES_MAX (256 * WP_MiB)         /* hard cap for writer.max_entry_bytes */
#define WP_ENTRY_BYTES_DEFAULT (64 * WP_MiB)
#define WP_PROPS_MAX 1024                         /* properties per entry */
#define WP_PROP_KEY_MAX 65535                     /* bytes (u16 in format) */
#define WP_PROP_VALUE_MAX (16 * WP_MiB)           /* bytes */
#define WP_PROPS_BYTES_MAX (16 * WP_MiB)          /* all properties of one entry */

/* Blocks (one flush = one block). */
#define WP_BLOCK_ENTRIES_MAX (1 << 20)
#define WP_BLOCK_BYTES_MAX (WP_ENTRY_BYTES_MAX + WP_PROPS_BYTES_MAX + 64 * WP_MiB)

/* Segments. */
#define WP_SEGMENT_BLOCKS_MAX (1 << 22)           /* index entries per footer */
#define WP_SEGMENT_BYTES_MAX (64 * WP_GiB)        /* a whole segment, index and footer included */
/* The largest index (16 bytes per block) and footer (64 bytes) that
 * completing a segment appends (docs/format.md §6, §7). */
#define WP_SEGMENT_TAIL_BYTES_MAX (WP_SEGMENT_BLOCKS_MAX * 16LL + 64)
/* Upper bound of segment.max_bytes. The writer rolls before a segment's
 * data (header, blocks) would pass segment.max_bytes, so a full segment
 * still has room for its index and footer, whatever segment.max_blocks. */
#define WP_SEGMENT_MAX_BYTES_MAX (63 * WP_GiB)

/* Flush policy bounds (configurable values are checked against these). */
#define WP_FLUSH_BYTES_MIN 512
#define WP_FLUSH_BYTES_MAX (256 * WP_MiB)
#define WP_FLUSH_INTERVAL_MS_MAX 60000
#define WP_PENDING_BYTES_MAX (16 * WP_GiB)

/* Config files. */
#define WP_CONFIG_FILE_BYTES_MAX (1 * WP_MiB)
#define WP_CONFIG_VALUE_MAX 4096
#define WP_PATH_MAX 4096
#define WP_NODE_ID_MAX 128 /* a LogStore / streaming node id (metadata key part) */

/* Error messages. */
#define WP_ERRMSG_MAX 512

_Static_assert(WP_ENTRY_BYTES_DEFAULT <= WP_ENTRY_BYTES_MAX, "default entry cap");
_Static_assert(WP_BLOCK_BYTES_MAX > WP_ENTRY_BYTES_MAX + WP_PROPS_BYTES_MAX,
               "a block holds at least one maximal entry");
_Static_assert(WP_BLOCK_BYTES_MAX < (1LL << 32), "block length fits the u32 header field");
_Static_assert(WP_PROPS_MAX <= 65535, "property count fits u16");
_Static_assert(WP_PROP_KEY_MAX <= 65535, "key length fits u16");
_Static_assert(WP_FLUSH_BYTES_MAX <= WP_BLOCK_BYTES_MAX, "flush fits a block");
_Static_assert(WP_SEGMENT_MAX_BYTES_MAX + WP_SEGMENT_TAIL_BYTES_MAX <= WP_SEGMENT_BYTES_MAX,
               "a segment filled to segment.max_bytes can complete (see also writer.c)");
_Static_assert(WP_LOG_NAME_MAX < 256, "name fits wp_log_info.name");

#endif
