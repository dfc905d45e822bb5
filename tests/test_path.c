/* test_path.c -- qh_path_format refuses to truncate. */
#include <string.h>

#include "qh_path.h"
#include "qh_test.h"

int main(void)
{
    char buf[8];
    QH_CHECK(qh_path_format(buf, sizeof buf, "cell", "%s/%s", "ab", "cd") == QH_OK, "fits");
    QH_CHECK(strcmp(buf, "ab/cd") == 0, "formatted text");
    QH_CHECK(qh_path_format(buf, sizeof buf, "cell", "%s/%s", "abc", "def") == QH_OK, "exactly 7 bytes fit");
    QH_CHECK(qh_path_format(buf, sizeof buf, "results file", "%s/%s", "abcd", "efgh") == QH_EINVAL,
             "8 bytes in 8 refused");
    QH_CHECK(strstr(qh_last_error(), "results file") != NULL, "message names what was built");
    QH_CHECK(strstr(qh_last_error(), "too long") != NULL, "message says why");
    QH_CHECK(qh_path_format(buf, 0, "x", "%s", "") == QH_EINVAL, "no room at all refused");
    return qh_test_summary();
}
