/* restore_cover.h: whether a file store whose saved position fell out of
 * the log may be replaced by the changelog's state (worker/ingest_restore.c,
 * schemas/README.md §4). Pure: no I/O, any thread.
 *
 * The store does not know which partition an entry came from, so the
 * replacement is of the whole state, and every partition then continues
 * from the changelog's position. Per partition p, with c the changelog's
 * position, s the file's saved position (0 when none) and low the log
 * start:
 *   - c >= low: the changelog covers p (replaying from c is exact);
 *   - c < low, low > s: p has a gap either way; the replacement is no
 *     worse when c >= s;
 *   - c < low <= s: the file covers p but the changelog does not: the
 *     replacement would make a gap, so it is refused.
 * Replaced only when no partition is made worse and at least one
 * partition whose saved position fell out of the log is covered. */
#ifndef EDR_WORKER_RESTORE_COVER_H
#define EDR_WORKER_RESTORE_COVER_H

#include <stddef.h>
#include <stdint.h>

enum restore_cover {
    RESTORE_COVER_REPLACE = 0, /* replace the state with the changelog's */
    RESTORE_COVER_NONE,        /* it covers no partition out of the log */
    RESTORE_COVER_BEHIND,      /* it is behind the file in *at */
};

/* c, s, low: n entries, indexed by partition (s < 0: nothing saved, as 0).
 * *at (may be NULL) = the partition that refused it (BEHIND), else -1. */
enum restore_cover restore_cover_decide(size_t n, const int64_t *c,
                                        const int64_t *s, const int64_t *low,
                                        int32_t *at);

/* 1 when partition i has a gap the changelog does not cover either
 * (its saved position and the changelog's are both below the log start). */
int restore_cover_uncovered(int64_t c, int64_t s, int64_t low);

#endif
