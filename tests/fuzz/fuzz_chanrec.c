/* fuzz_chanrec.c — libFuzzer target for the channel record decoder
 * (sc_rec_decode, docs/streaming.md §2), the one the client, the nodes and
 * the coordinator use for stream/channels/<name> values read from the
 * metadata store. The first byte picks the name's length from the next
 * bytes; the rest is the value. A record that decodes must hold what the
 * rules allow: the name given, a term and creation time in [0, 2^53], an
 * owner that is "" or a node id, an address that is "" or host:port. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/stream_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nl = data[0] % 8;
    if (size - 1 < nl)
        return 0;
    char name[16];
    memcpy(name, data + 1, nl);
    name[nl] = '\0';
    if (nl == 0)
        memcpy(name, "c1", 3);
    sc_rec r;
    if (sc_rec_decode(name, data + 1 + nl, size - 1 - nl, &r) != WP_OK) {
        wp__err_clear();
        return 0;
    }
    if (!sc_channel_valid(r.name) || strcmp(r.name, name) != 0 || r.term < 0 ||
        r.term > 9007199254740992LL || r.created_ms < 0 || r.created_ms > 9007199254740992LL ||
        (r.owner[0] && !meta_node_id_valid(r.owner, strlen(r.owner))) ||
        (r.addr[0] && !meta_node_addr_valid(r.addr, strlen(r.addr))))
        abort();
    return 0;
}
