/* test_quorum_rules.c — the recovery target of the quorum rules
 * (ARCHITECTURE §7.1, src/storage/quorum.c), on the cases where published
 * Woodpecker lost acknowledged entries or wedged a log (issue 10). */
#include "test.h"

#include "storage/quorum.h"

#define U INT64_MIN /* no answer: unknown */

TEST(every_answer_in)
{
    int64_t last[3] = {10, 10, 7};
    CHECK(quorum_target(3, 2, last, 9) == 10); /* entry 10 on two: maybe acked */
    int64_t last2[3] = {10, 7, 7};
    CHECK(quorum_target(3, 2, last2, 7) == 7); /* 8..10 on one only: never acked */
}

/* A lost FENCE answer is unknown, never "absent": the target stays at
 * least what the answering replicas allow. Treating it as absent would
 * drop entries 8..10, acked by replicas 0 and the silent one. */
TEST(lost_fence_answer_never_lowers_the_target)
{
    int64_t last[3] = {10, U, 7};
    CHECK(quorum_target(3, 2, last, 7) == 10);
    int64_t as_absent[3] = {10, -1, 7};
    CHECK(quorum_target(3, 2, as_absent, 7) == 7); /* what the wrong rule would give */
}

/* A replica that lags (it missed ADDs) does not seal the segment short:
 * the LAC is a floor. */
TEST(lagging_replica_does_not_cut_acked_entries)
{
    int64_t last[3] = {3, U, 12};
    CHECK(quorum_target(3, 2, last, 11) == 12);
    int64_t last2[3] = {3, 3, 12};
    CHECK(quorum_target(3, 2, last2, 11) == 11); /* 12: one copy, not acked; 11 acked (LAC) */
}

/* [0, -1, -1]: a segment with entry 0 on one replica. Its ack needed two
 * copies, so it was never acked: the target is -1 (empty), at once. */
TEST(zero_minus_one_minus_one_does_not_wedge)
{
    int64_t last[3] = {0, -1, -1};
    CHECK(quorum_target(3, 2, last, -1) == -1);
    int64_t one_unknown[3] = {0, -1, U};
    CHECK(quorum_target(3, 2, one_unknown, -1) == 0); /* the unknown one may hold 0 too */
}

TEST(too_few_answers)
{
    int64_t last[3] = {5, U, U};
    CHECK(quorum_target(3, 2, last, 4) == INT64_MIN); /* need 2 answers for 3/2 */
    int64_t five[5] = {9, 9, U, U, 4};
    CHECK(quorum_target(5, 3, five, 4) == 9);          /* 5/3: 3 answers suffice */
    int64_t five2[5] = {9, U, U, U, 4};
    CHECK(quorum_target(5, 3, five2, 4) == INT64_MIN);
}

int main(void)
{
    RUN(every_answer_in);
    RUN(lost_fence_answer_never_lowers_the_target);
    RUN(lagging_replica_does_not_cut_acked_entries);
    RUN(zero_minus_one_minus_one_does_not_wedge);
    RUN(too_few_answers);
    return test_done();
}
