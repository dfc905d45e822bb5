/* test_path.c -- qh_path_format refuses to truncate; qh_path_mkdirs creates
 * a folder with its parents, accepts one that exists and refuses a file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

    char dir[] = "/tmp/qh_test_path_XXXXXX", deep[128], file[128];
    QH_CHECK(mkdtemp(dir) != NULL, "temporary folder");
    snprintf(deep, sizeof deep, "%s/a/b/c/", dir);
    struct stat sb;
    QH_CHECK(qh_path_mkdirs(deep) == QH_OK && stat(deep, &sb) == 0 && S_ISDIR(sb.st_mode),
             "mkdirs creates a/b/c (trailing slash): %s", qh_last_error());
    QH_CHECK(qh_path_mkdirs(deep) == QH_OK, "and accepts it when it exists");
    snprintf(file, sizeof file, "%s/a/f", dir);
    FILE *f = fopen(file, "w");
    if (f) fclose(f);
    QH_CHECK(qh_path_mkdirs(file) == QH_EIO && strstr(qh_last_error(), "not a folder"),
             "a file is refused: %s", qh_last_error());
    snprintf(deep, sizeof deep, "%s/a/f/g", dir);
    QH_CHECK(qh_path_mkdirs(deep) == QH_EIO && strstr(qh_last_error(), "cannot create"),
             "a folder under a file is refused: %s", qh_last_error());
    QH_CHECK(qh_path_mkdirs("") == QH_EINVAL, "an empty path is refused");
    remove(file);
    snprintf(deep, sizeof deep, "%s/a/b/c", dir); rmdir(deep);
    snprintf(deep, sizeof deep, "%s/a/b", dir); rmdir(deep);
    snprintf(deep, sizeof deep, "%s/a", dir); rmdir(deep);
    rmdir(dir);
    return qh_test_summary();
}
