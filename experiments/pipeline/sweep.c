/* sweep.c -- stale cells and the configuration snapshot (see sweep.h). */
#include "pipeline/sweep.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pipeline/config.h"
#include "qh_path.h"
#include "results/reader.h"
#include "results/record.h"

/* /run/protocol of a results file, new; NULL when it has none. */
static char *read_protocol(const char *path)
{
    hid_t f;
    char *text = NULL;
    if (qh_h5_open_read(path, &f) != QH_OK) return NULL;
    if (qh_h5_attr_exists(f, "/run", "protocol") && qh_h5_attr_string(f, "/run", "protocol", &text) != QH_OK)
        text = NULL;
    qh_h5_close(f);
    return text;
}

void qh_sweep_stale_reason(const char *path, const char *want, const char *const *skip, char *why,
                           size_t cap)
{
    char *have = read_protocol(path);
    size_t n = 0;
    why[0] = '\0';
    if (!have)
        snprintf(why, cap, "no protocol record (written before cells kept one)");
    else if (!want || qh_record_diff(have, want, NULL, skip, why, cap, &n) != QH_OK)
        snprintf(why, cap, "record not comparable: %s", qh_last_error());
    free(have);
}

int qh_sweep_snapshot_path(const char *out, char *buf, size_t cap)
{
    return qh_path_format(buf, cap, "configuration snapshot", "%s/sweep.json", out);
}

/* 1 if the two JSON texts hold the same values (formatting aside). */
static int same_json(const char *a, const char *b)
{
    cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
    int same = ja && jb && cJSON_Compare(ja, jb, 1);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return same;
}

static int write_snapshot(const char *path, const char *json)
{
    char tmp[1200];
    QH_TRY(qh_path_format(tmp, sizeof tmp, "configuration snapshot", "%s.tmp.%ld", path, (long)getpid()));
    FILE *f = fopen(tmp, "w");
    if (!f) QH_ERROR(QH_EIO, "cannot write the configuration snapshot %s", tmp);
    int ok = fputs(json, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        QH_ERROR(QH_EIO, "cannot write the configuration snapshot %s", path);
    }
    return QH_OK;
}

int qh_sweep_snapshot_sync(const char *out, const char *json, const char *config_name, int update,
                           int dry_run, int *replaced)
{
    char path[1100];
    *replaced = 0;
    QH_TRY(qh_sweep_snapshot_path(out, path, sizeof path));
    char *old = qh_read_text_file(path);
    int had = old != NULL, same = old && same_json(old, json);
    free(old);
    if (same) return QH_OK;
    if (had && !update)
        QH_ERROR(QH_ECONFIG, "%s differs from %s, the configuration this folder was first run with; "
                 "give --update-snapshot to replace the snapshot (cells whose protocol changes are "
                 "then listed as stale), or another --out", config_name, path);
    if (dry_run) return QH_OK;
    QH_TRY(write_snapshot(path, json));
    *replaced = had;
    return QH_OK;
}
