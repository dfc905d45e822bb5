# metric_vs_bpw.gp -- perplexity, KL divergence to the float model and top-1
# agreement against total bits per weight, every method of a sweep; one
# colour per method, one dash pattern per incoherence kind, error bars: the
# sample standard deviation over seeds.
# Data (from `qh report`): metric_vs_bpw.<model>.<dataset>.tsv, one block per
# method label (gnuplot `index`), each opening with a header row whose first
# field is the label; columns: total bpw, ppl, ppl_sd, kl, kl_sd, agree,
# agree_sd, n_seeds.  ncols: the number of blocks; series: per block
# "colour dash" (1-based), as the report writes them.
if (!exists("plotdir")) { plotdir = "analysis/plots/" }
load plotdir."common.gp"
if (!exists("ncols")) { ncols = 1 }
if (!exists("series")) { series = "" }

# Twelve distinct colours (Okabe-Ito, then four more), so methods never share one.
colours = "#000000 #E69F00 #56B4E9 #009E73 #D55E00 #0072B2 #CC79A7 #999933 #882255 #44AA99 #AA4499 #661100"
colour(i) = word(colours, 1 + (int(word(series, 2 * i + 1)) - 1) % 12)
dash(i) = int(word(series, 2 * i + 2))  # 1 none (solid), 2 kron, 3 hadamard

png_term_tall = 'set terminal pngcairo size 1500,520 font "DejaVu Sans,11" linewidth 1.5 noenhanced'
svg_term_tall = 'set terminal svg size 1500,520 font "DejaVu Sans,11" linewidth 1.5 noenhanced background rgb "white"'

do for [pass=1:2] {
    if (pass == 1) { @png_term_tall; set output outfile.".png" } else { @svg_term_tall; set output outfile.".svg" }
    set multiplot layout 1,3 title ttl
    set xlabel "total bits per weight"
    set key top right font ",9"
    set logscale y
    set title "perplexity"
    set ylabel "perplexity (log scale)"
    plot for [i=0:ncols-1] datafile index i using 1:2:3 with yerrorlines lc rgb colour(i) dt dash(i) pt 7 ps 0.8 title columnhead(1)
    set title "KL divergence to the float model"
    set ylabel "KL(float || quant), nats per token (log scale)"
    set key off
    plot for [i=0:ncols-1] datafile index i using 1:4:5 with yerrorlines lc rgb colour(i) dt dash(i) pt 7 ps 0.8 notitle
    unset logscale y
    set title "top-1 agreement with the float model"
    set ylabel "top-1 agreement with float"
    plot for [i=0:ncols-1] datafile index i using 1:6:7 with yerrorlines lc rgb colour(i) dt dash(i) pt 7 ps 0.8 notitle
    unset multiplot
    set output
}
