# table_to_scatter.awk -- turns the perplexity table of `qh report` (table.md)
# into the data of ppl_vs_total_bits.gp: one line per model, method and bit
# width of one dataset, for the figure "perplexity against total bits, one
# colour per method, one marker per bit width".
# Usage: awk -v model=opt-7m -v dataset=wikitext2 -f table_to_scatter.awk table.md > data.tsv
# Output columns (tab-separated): method (spaces as _), width (the sweep's
# bits), nominal bpw, total bpw, mean perplexity, sd (0 for one seed),
# method index (1, 2, ... in table order), width index (1, 2, ... ascending).
BEGIN { FS = "|"; OFS = "\t" }
/^## / { cur = substr($0, 4); next }
cur != model { next }
/^\| Method/ {
    for (i = 2; i < NF; i++) {
        h = $i; gsub(/^ +| +$/, "", h); split(h, w, " ");
        if (w[2] == dataset) pcol[substr(w[1], 2)] = i;
        if (w[2] == "bpw") bcol[substr(w[1], 2)] = i;
    }
    next
}
/^\|:/ { next }
/^\| / {
    name = $2; gsub(/^ +| +$/, "", name); gsub(/ /, "_", name);
    if (name == "FP32") next;
    if (!(name in midx)) midx[name] = ++nm;
    for (b in pcol) {
        p = $(pcol[b]); q = $(bcol[b]);
        gsub(/^ +| +$/, "", p); gsub(/^ +| +$/, "", q);
        if (p == "" || p == "-" || p == "—") continue;
        n = split(p, pp, " "); mean = pp[1]; sd = (n >= 3 && pp[2] == "±") ? pp[3] : 0;
        split(q, qq, " / ");
        print name, b, qq[1], qq[2], mean, sd, midx[name], b + 0;
    }
}
