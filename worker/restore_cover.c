/* restore_cover.c: see restore_cover.h. */
#include "worker/restore_cover.h"

int restore_cover_uncovered(int64_t c, int64_t s, int64_t low)
{
    return c < low && low > (s < 0 ? 0 : s);
}

enum restore_cover restore_cover_decide(size_t n, const int64_t *c,
                                        const int64_t *s, const int64_t *low,
                                        int32_t *at)
{
    int useful = 0;
    if (at)
        *at = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t saved = s[i] < 0 ? 0 : s[i];
        if (c[i] >= low[i]) {
            useful |= low[i] > saved;
            continue;
        }
        if (low[i] <= saved || c[i] < saved) {
            if (at)
                *at = (int32_t)i;
            return RESTORE_COVER_BEHIND;
        }
    }
    return useful ? RESTORE_COVER_REPLACE : RESTORE_COVER_NONE;
}
