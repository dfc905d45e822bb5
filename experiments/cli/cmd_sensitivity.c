/* cmd_sensitivity.c -- `qh sensitivity CONFIG --out TSV`: each linear (or
 * block) of one cell quantized alone, with its perplexity change; optionally
 * a greedy allocation of wider bits to a budget, or a selection of the units
 * to compress to a budget of entries kept, written as per-layer rules
 * (pipeline/sensitivity.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "pipeline/sensitivity.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qh sensitivity CONFIG --out TSV [--cell ID] [--unit linear|block]\n"
        "                      [--allocate BITS --high B --rules FILE]\n"
        "                      [--select FRAC [--by ppl|proxy] --rules FILE] [--quiet]\n"
        "       qh sensitivity --from TSV (--allocate BITS --high B | --select FRAC [--by B]) --rules FILE\n\n"
        "For one cell of CONFIG (default: the first), quantizes every decoder linear at the\n"
        "cell's width on float-model Hessians, then evaluates the model on the first dataset\n"
        "with one unit (a linear, or a block's linears) quantized at a time.  TSV columns:\n"
        "unit, layer, kind, weights, bits, proxy, ppl, ppl_float, dppl (ppl - ppl_float),\n"
        "bits_total (the unit's total bits per weight when quantized).\n"
        "Per-layer rules of CONFIG are not applied.\n\n"
        "With --allocate, a greedy baseline (not a published method): units are raised to\n"
        "--high bits in the order of dppl per added bit until the nominal bits per weight\n"
        "over all linears would exceed BITS; the result is a JSON array of rules for a\n"
        "method entry's \"layers\" or qh quantize --layers.\n\n"
        "With --select, layer selection for the factorisation rows (mpo, lowrank): units\n"
        "are compressed in the order of dppl (or proxy, --by proxy) per entry saved,\n"
        "cheapest first, until the entries kept (weights x bits_total / bits for a\n"
        "compressed unit, weights for a float one) fall to FRAC of the dense linears; the\n"
        "rules keep the other units in float (\"skip\").\n\n"
        "options:\n"
        "  --out TSV        the table (written under a temporary name, then renamed)\n"
        "  --cell ID        the cell to measure (an id of qh run CONFIG --dry-run)\n"
        "  --unit U         linear (default) or block\n"
        "  --allocate BITS  budget in nominal bits per weight (e.g. 2.5)\n"
        "  --high B         the wider width of upgraded units\n"
        "  --rules FILE     where the allocation's rules go\n"
        "  --select FRAC    fraction of the linears' entries to keep, in (0, 1) (e.g. 0.3)\n"
        "  --by B           selection order: ppl (dppl, default) or proxy\n"
        "  --from TSV       allocate or select from a table written before (no measuring)\n"
        "  --quiet          no progress lines\n");
}

/* The allocation (budget > 0) or the selection (keep > 0) into rules, with its summary line. */
static int rules_from(const qh_sens_result *r, double budget, int high, double keep, qh_select_by by,
                      const char *rules)
{
    if (budget > 0) {
        double avg = 0;
        QH_TRY(qh_sensitivity_allocate(r, budget, high, rules, &avg));
        printf("allocation: %.4f nominal bits per weight (budget %.4g); rules %s\n", avg, budget, rules);
        return QH_OK;
    }
    double kept = 0;
    size_t n = 0;
    QH_TRY(qh_sensitivity_select(r, keep, by, rules, &kept, &n));
    printf("selection: %zu of %zu units compressed, %.4f of the entries kept (budget %.4g%s); rules %s\n", n,
           r->n, kept, keep, kept > keep + 1e-12 ? ": not reached, every unit that saves entries compressed" : "",
           rules);
    return QH_OK;
}

int qh_cmd_sensitivity(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "out", 1, 0, 'o' }, { "cell", 1, 0, 'c' }, { "unit", 1, 0, 'u' }, { "allocate", 1, 0, 'a' },
        { "high", 1, 0, 'H' }, { "rules", 1, 0, 'r' }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' },
        { "from", 1, 0, 'f' }, { "select", 1, 0, 's' }, { "by", 1, 0, 'b' }, { 0, 0, 0, 0 },
    };
    const char *out = NULL, *cell_id = NULL, *rules = NULL, *from = NULL;
    int per_block = 0, quiet = 0, high = 0, c;
    double budget = 0, keep = 0;
    qh_select_by by = QH_SELECT_BY_PPL;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'c': cell_id = optarg; break;
        case 'r': rules = optarg; break;
        case 'f': from = optarg; break;
        case 'q': quiet = 1; break;
        case 'u':
            if (strcmp(optarg, "linear") && strcmp(optarg, "block")) {
                fprintf(stderr, "qh sensitivity: --unit expects linear or block, got '%s'\n", optarg);
                return 2;
            }
            per_block = !strcmp(optarg, "block");
            break;
        case 'a':
            budget = strtod(optarg, &end);
            if (*end || !(budget > 0)) {
                fprintf(stderr, "qh sensitivity: --allocate expects bits per weight > 0, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'H':
            high = (int)strtol(optarg, &end, 10);
            if (*end || high < 1 || high > 8) {
                fprintf(stderr, "qh sensitivity: --high expects an integer in [1, 8], got '%s'\n", optarg);
                return 2;
            }
            break;
        case 's':
            keep = strtod(optarg, &end);
            if (*end || !(keep > 0 && keep < 1)) {
                fprintf(stderr, "qh sensitivity: --select expects a fraction in (0, 1), got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'b':
            if (strcmp(optarg, "ppl") && strcmp(optarg, "proxy")) {
                fprintf(stderr, "qh sensitivity: --by expects ppl or proxy, got '%s'\n", optarg);
                return 2;
            }
            by = strcmp(optarg, "ppl") ? QH_SELECT_BY_PROXY : QH_SELECT_BY_PPL;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (keep > 0 && budget > 0) {
        fprintf(stderr, "qh sensitivity: --allocate and --select exclude each other\n");
        return 2;
    }
    if ((budget > 0) != (high > 0) || (budget > 0 || keep > 0) != (rules != NULL)) {
        fprintf(stderr, "qh sensitivity: --allocate and --high, or --select, go with --rules\n");
        return 2;
    }
    if (from) {
        qh_sens_result r;
        if (!rules || optind != argc) {
            fprintf(stderr, "qh sensitivity: --from TSV takes --allocate or --select and --rules, no CONFIG\n");
            return 2;
        }
        int st = qh_sensitivity_read_tsv(from, &r);
        if (st == QH_OK) st = rules_from(&r, budget, high, keep, by, rules);
        if (st != QH_OK) fprintf(stderr, "qh sensitivity: %s\n", qh_last_error());
        if (st == QH_OK) qh_sens_result_free(&r);
        return st == QH_OK ? 0 : 1;
    }
    if (optind != argc - 1 || !out) {
        fprintf(stderr, "qh sensitivity: expected one CONFIG and --out TSV (see qh sensitivity --help)\n");
        return 2;
    }
    qh_config *cfg = NULL;
    qh_cell *cells = NULL;
    size_t n = 0, pick = 0;
    int rc = 1;
    int st = qh_config_load(argv[optind], &cfg);
    if (st == QH_OK) st = qh_pipeline_validate(cfg);
    if (st == QH_OK) st = qh_config_cells(cfg, &cells, &n);
    if (st != QH_OK) {
        fprintf(stderr, "qh sensitivity: %s\n", qh_last_error());
        goto done;
    }
    if (cell_id) {
        while (pick < n && strcmp(cells[pick].id, cell_id)) pick++;
        if (pick == n) {
            fprintf(stderr, "qh sensitivity: no cell %s in %s (qh run %s --dry-run lists them)\n", cell_id,
                    argv[optind], argv[optind]);
            goto done;
        }
    }
    qh_sens_result r;
    if (qh_sensitivity_run(cfg, &cells[pick], per_block, quiet ? NULL : stderr, &r) != QH_OK) {
        fprintf(stderr, "qh sensitivity: %s: %s\n", cells[pick].id, qh_last_error());
        goto done;
    }
    st = qh_sensitivity_write_tsv(&r, out);
    if (st == QH_OK)
        printf("%s: %zu units measured at %d bits (float ppl %.4f); table %s\n", cells[pick].id, r.n,
               r.bits, r.ppl_float, out);
    if (st == QH_OK && rules) st = rules_from(&r, budget, high, keep, by, rules);
    if (st != QH_OK) fprintf(stderr, "qh sensitivity: %s\n", qh_last_error());
    else rc = 0;
    qh_sens_result_free(&r);
done:
    free(cells);
    qh_config_free(cfg);
    return rc;
}
