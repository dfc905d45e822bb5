# ppl_vs_total_bits.gp -- perplexity against total bits per weight, one
# colour per method, one marker per nominal width (circle about 1 bit, triangle
# about 1.58, square 2 or more; issue 18's
# survey figure).  Data from table_to_scatter.awk (columns: method, width,
# nominal, total, mean ppl, sd, method index, width); the float32 baseline
# is a horizontal line when `fp32` is set.
# Usage: gnuplot -e 'datafile="x.tsv"; outfile="fig"; fp32=418.1' ppl_vs_total_bits.gp
if (!exists("plotdir")) { plotdir = "analysis/plots/" }
load plotdir."common.gp"
stats datafile using 7 nooutput
nm = int(STATS_max)
set xlabel "total bits per weight (code + side information)"
set ylabel "perplexity (log scale)"
set logscale y
set key outside right top
set grid
set pointsize 1.6
@png_term
set output outfile.".png"
# The survey has up to twenty methods: Kelly's twenty colours of maximum
# contrast, in table order (common.gp's 8-colour line types would repeat).
array C[20] = ["#222222", "#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", \
               "#848482", "#008856", "#E68FAC", "#0067A5", "#F99379", "#604E97", "#F6A600", \
               "#B3446C", "#DCD300", "#882D17", "#8DB600", "#654522", "#E25822"]
col(k) = C[(k - 1) % 20 + 1]
method(k) = system(sprintf("awk -F'\t' '$7==%d {print $1; exit}' %s", k, datafile))
set offsets 0.05, 0.05, 0, 0
plot for [k=1:nm] datafile using ($7 == k ? $4 : NaN):5:($3 < 1.3 ? 7 : $3 < 1.8 ? 9 : 5) \
        with points pt variable ps 1.6 lc rgb col(k) notitle, \
     for [k=1:nm] NaN with points pt 7 ps 1.6 lc rgb col(k) title method(k), \
     NaN with points pt 6 lc rgb "black" title "about 1 bit", \
     NaN with points pt 8 lc rgb "black" title "about 1.58 bits", \
     NaN with points pt 4 lc rgb "black" title "2 bits", \
     (exists("fp32") ? fp32 : NaN) with lines lc rgb "black" dt 2 title "FP32"
@svg_term
set output outfile.".svg"
replot
set output
