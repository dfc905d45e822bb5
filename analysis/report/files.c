/* files.c -- the report's output files (temporary name, then rename, so a
 * reader never sees half a table) and its small string lists; used by the
 * table and figure writers and by write.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_path.h"
#include "report/report_internal.h"

/* ---- small utilities -------------------------------------------------------- */

int rep_push_fmt(char ***list, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = len < 0 ? NULL : malloc((size_t)len + 1);
    char **grown = s ? realloc(*list, (*n + 1) * sizeof **list) : NULL;
    if (!grown) {
        free(s);
        QH_ERROR(QH_ENOMEM, "out of memory (report list)");
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    *list = grown;
    grown[(*n)++] = s;
    return QH_OK;
}

int rep_has_str(const char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

/* ---- output files: temporary name, then rename ------------------------------------ */

int rep_out_open(rep_out_file *o, const char *dir, const char *name)
{
    o->f = NULL;
    QH_TRY(qh_path_format(o->path, sizeof o->path, "report file", "%s/%s", dir, name));
    QH_TRY(qh_path_format(o->tmp, sizeof o->tmp, "report file", "%s.tmp", o->path));
    if (!(o->f = fopen(o->tmp, "w")))
        QH_ERROR(QH_EIO, "cannot create %s (%s)", o->tmp, strerror(errno));
    return QH_OK;
}

int rep_out_commit(rep_out_file *o, qh_report_outputs *out)
{
    int bad = ferror(o->f);
    if (fclose(o->f) != 0)
        bad = 1;
    o->f = NULL;
    if (bad || rename(o->tmp, o->path) != 0) {
        remove(o->tmp);
        QH_ERROR(QH_EIO, "cannot write %s (%s)", o->path, strerror(errno));
    }
    return rep_push_fmt(&out->paths, &out->n_paths, "%s", o->path);
}

void rep_out_abort(rep_out_file *o)
{
    if (o->f) {
        fclose(o->f);
        remove(o->tmp);
        o->f = NULL;
    }
}
