/* protocol.h -- the protocol record of a sweep cell: everything that decides
 * its numbers, as one canonical JSON object (sorted dotted keys, no
 * whitespace), stored as /run/protocol of its results file with
 * /run/protocol_sha256 (layout in results/README.md).
 *
 * Keys: record.version; model.file.<name> (SHA-256 of config.json,
 * tokenizer.json, the shard index and every safetensors file read);
 * calibration.{file, sha256, nsamples, seqlen, seed}; eval.{seqlen,
 * max_windows} and eval.data.<label>.{file, sha256}; method.{name, version}
 * and method.param.<key> for every parameter of the row, defaults included
 * (qh_param_format); incoherence, rescale (as applied: false without
 * incoherence), bits, seed; layers (only when per-layer rules apply to the
 * cell's entry: the rules in order, {match, bits, skip, params}); code.{commit, dirty} (the git commit of the
 * working folder, qh_provenance_code_version); blas.{core, threads}.  A
 * baseline has method.name "float32" and no calibration or method keys.
 * Files are named by base name: a record does not change when a folder moves.
 * Sequence lengths are resolved (0 in the configuration: the model's
 * max_position_embeddings).
 *
 * `qh run` compares the stored record of a complete cell with the one the
 * current configuration gives: a difference makes the cell stale.
 */
#ifndef QH_PROTOCOL_H
#define QH_PROTOCOL_H

#include <stddef.h>

#include "pipeline/config.h"

/* Key prefixes that describe the machine a cell ran on rather than what the
 * configuration asks for: `qh status` and the Slurm submitter, which run
 * elsewhere than the cells, leave them out of the comparison. */
extern const char *const qh_protocol_host_keys[];

/* SHA-256 of a file's bytes as 64 hex digits.  Cached per process by path,
 * size and modification time, so a model shard is read once however many
 * cells name it.  Return: QH_OK; QH_EIO (message names the file). */
int qh_file_sha256(const char *path, char hex[65]) QH_MUST_CHECK;

/* The record of cell (or, cell NULL, of the float32 baseline of model index
 * `model`) under cfg, with the BLAS thread count the cell runs with.  A file
 * that cannot be read is recorded as "unreadable" (its cell fails anyway).
 * Output: *json (new, free()).  Return: QH_OK; QH_ECONFIG (a method entry
 * the method table refuses); QH_ENOMEM. */
int qh_protocol_record(const qh_config *cfg, size_t model, const qh_cell *cell, int blas_threads,
                       char **json) QH_MUST_CHECK;

/* SHA-256 of the record text as 64 hex digits (/run/protocol_sha256). */
void qh_protocol_sha256(const char *json, char hex[65]);

#endif
