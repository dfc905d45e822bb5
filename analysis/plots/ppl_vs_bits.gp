# ppl_vs_bits.gp -- perplexity against bit width, one line per method.
# Data (from `qh report`): ppl_vs_bits.<model>.<dataset>.tsv with columns
#   bits, then one column per method label (mean perplexity over seeds; the
#   float32 baseline is constant over bits, so it draws a reference line).
if (!exists("plotdir")) { plotdir = "analysis/plots/" }
load plotdir."common.gp"
@count_columns

set xlabel "bits per weight (nominal)"
set ylabel "perplexity (log scale)"
set logscale y
set xtics 1
set autoscale yfix               # no padding to whole decades: the lines stay apart
set offsets 0.25, 0.25, graph 0.08, graph 0.08
set mytics 10

@png_term                          # first pass fixes the y range for log_ytics
set output outfile.".png"
plot for [i=2:ncols] datafile using 1:i with linespoints lt (i-1) lw 1.5 title columnhead(i)
@log_ytics
set output outfile.".png"
plot for [i=2:ncols] datafile using 1:i with linespoints lt (i-1) lw 1.5 title columnhead(i)
@svg_term
set output outfile.".svg"
replot
set output
