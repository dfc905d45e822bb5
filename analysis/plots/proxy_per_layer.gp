# proxy_per_layer.gp -- relative proxy loss of every quantized layer at one
# bit width, one line per method.
# Data (from `qh report`): proxy_per_layer.<model>.w<bits>.tsv with columns
#   index (model order), layer (decoder block), name, then one column per
#   method label (proxy_rel, mean over seeds).
if (!exists("plotdir")) { plotdir = "analysis/plots/" }
load plotdir."common.gp"
@count_columns

set xlabel "layer index (model order)"
set ylabel "relative proxy loss tr((W-Q)H(W-Q)^T) / tr(WHW^T) (log scale)"
set logscale y
set mytics 10
set autoscale xfix
set autoscale yfix
set offsets 0.5, 0.5, graph 0.08, graph 0.08
stats datafile using 1 skip 1 nooutput
if (STATS_records <= 24) { set xtics 1 }   # one tick per layer when they fit
set key title "method"

@png_term                          # first pass fixes the y range for log_ytics
set output outfile.".png"
plot for [i=4:ncols] datafile using 1:i with linespoints lt (i-3) lw 1.2 ps 0.7 title columnhead(i)
@log_ytics
set output outfile.".png"
plot for [i=4:ncols] datafile using 1:i with linespoints lt (i-3) lw 1.2 ps 0.7 title columnhead(i)
@svg_term
set output outfile.".svg"
replot
set output
