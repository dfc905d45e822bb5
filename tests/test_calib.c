/* test_calib.c -- seeded calibration windows: in range, contiguous, deterministic. */
#include "qh_test.h"

#include <string.h>

#include "pipeline/calib.h"

int main(void)
{
    enum { N = 1000, L = 64, S = 50 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = i;          /* id == position: windows reveal their start */
    int32_t *a = NULL, *b = NULL, *c = NULL;
    QH_CHECK(qh_calib_windows(ids, N, S, L, 0, "t", &a) == QH_OK, "draw seed 0");
    QH_CHECK(qh_calib_windows(ids, N, S, L, 0, "t", &b) == QH_OK, "draw seed 0 again");
    QH_CHECK(qh_calib_windows(ids, N, S, L, 1, "t", &c) == QH_OK, "draw seed 1");
    int contiguous = 1, in_range = 1;
    for (int s = 0; s < S; s++) {
        int start = a[s * L];
        in_range &= start >= 0 && start <= N - L - 1;
        for (int t = 1; t < L; t++) contiguous &= a[s * L + t] == start + t;
    }
    QH_CHECK(contiguous && in_range, "windows are contiguous runs starting in [0, N-L-1]");
    QH_CHECK(!memcmp(a, b, sizeof(int32_t) * S * L), "same seed, same windows");
    QH_CHECK(memcmp(a, c, sizeof(int32_t) * S * L) != 0, "different seed, different windows");
    free(a); free(b); free(c);

    int32_t *d = NULL;
    int st = qh_calib_windows(ids, L, 1, L, 0, "calib.txt", &d);
    QH_CHECK(st == QH_EINVAL && d == NULL && strstr(qh_last_error(), "calib.txt"),
             "too short a text is an error naming it: %s", qh_last_error());
    /* A text of exactly L + 1 tokens has one possible start. */
    QH_CHECK(qh_calib_windows(ids, L + 1, 3, L, 5, "t", &d) == QH_OK && d[0] == 0 && d[L] == 0,
             "L + 1 tokens: every window starts at 0");
    free(d);
    return qh_test_summary();
}
