/* sweep.h -- the state of a sweep's results folder, shared by `qh run` and
 * `qh status`: whether a complete cell file is current or stale (its protocol
 * record, /run/protocol, differs from the one the configuration gives; see
 * protocol.h), and the configuration's snapshot OUT/sweep.json, which keeps a
 * folder's cells and the configuration that describes them from drifting
 * apart. */
#ifndef QH_SWEEP_H
#define QH_SWEEP_H

#include <stddef.h>

#include "qh_error.h"

/* Why the complete results file at path is stale against want, the record
 * the configuration gives (NULL: it could not be built; the message says
 * so), leaving out keys under the prefixes of skip (NULL-terminated; NULL:
 * none): the keys that differ, or what keeps them from being compared, into
 * why (cap bytes); "" when the file is current. */
void qh_sweep_stale_reason(const char *path, const char *want, const char *const *skip, char *why,
                           size_t cap);

/* OUT/sweep.json into buf. */
int qh_sweep_snapshot_path(const char *out, char *buf, size_t cap) QH_MUST_CHECK;

/* Keeps OUT/sweep.json equal to json (values compared, formatting aside).
 * Without a snapshot it is written (temporary name, then rename) unless
 * dry_run; a different snapshot is replaced only when update is set (then
 * *replaced = 1), else QH_ECONFIG with a message naming config_name, the
 * snapshot and --update-snapshot.  QH_EIO when it cannot be written. */
int qh_sweep_snapshot_sync(const char *out, const char *json, const char *config_name, int update,
                           int dry_run, int *replaced) QH_MUST_CHECK;

#endif
