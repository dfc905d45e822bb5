# common.gp -- settings shared by the report figures (loaded by every script).
#
# Every script is run as
#   gnuplot -e "datafile='X.tsv'; outfile='BASE'; plotdir='analysis/plots/'; ttl='...'; ncols=N" SCRIPT.gp
# and writes BASE.png (pngcairo) and BASE.svg.  Inputs are the tab-separated
# files written by `qh report`: a header row, "NaN" where a value is missing.
# By hand: gnuplot -e "datafile='results/x/report/ppl_vs_bits.opt-7m.wikitext2.tsv'; \
#   outfile='/tmp/fig'" analysis/plots/ppl_vs_bits.gp

if (!exists("datafile")) { print "set datafile='FILE.tsv' with -e"; exit status 2 }
if (!exists("outfile")) { outfile = datafile[1:strlen(datafile) - 4] }
if (!exists("ttl")) { ttl = "" }

set datafile separator "\t"
set datafile missing "NaN"
set encoding utf8
set termoption noenhanced         # labels contain '_' (bound names, layer names)

# Terminals: the same size and font for PNG and SVG.
png_term = 'set terminal pngcairo size 1000,650 font "DejaVu Sans,11" linewidth 1.5 noenhanced'
svg_term = 'set terminal svg size 1000,650 font "DejaVu Sans,11" linewidth 1.5 noenhanced background rgb "white"'

# Colour-blind-safe palette (Okabe-Ito) for up to 8 series, then repeated.
set linetype 1 lc rgb "#000000" pt 7  ps 1.1
set linetype 2 lc rgb "#E69F00" pt 5  ps 1.1
set linetype 3 lc rgb "#56B4E9" pt 9  ps 1.2
set linetype 4 lc rgb "#009E73" pt 11 ps 1.2
set linetype 5 lc rgb "#D55E00" pt 13 ps 1.2
set linetype 6 lc rgb "#0072B2" pt 4  ps 1.1
set linetype 7 lc rgb "#CC79A7" pt 6  ps 1.1
set linetype 8 lc rgb "#F0E442" pt 8  ps 1.1
set linetype cycle 8

set grid xtics ytics mxtics mytics lc rgb "#dddddd" lw 1
set border lw 1
set key outside right top box opaque samplen 2 spacing 1.2 width 1
set title ttl font ",13"

# Number of columns of datafile when not given (scripts call this with `@count_columns`).
count_columns = 'if (!exists("ncols")) { stats datafile skip 1 nooutput; ncols = STATS_columns }'

# Labels a log y axis at readable values once a first plot has set
# GPVAL_Y_MIN/MAX: {1, 2, 5} x 10^k over ranges
# wider than 20x, denser mantissas over narrow ones (gnuplot's own log tics
# are whole decades only, so a narrow range would get no label at all).
log_ytics = 'ymin = GPVAL_Y_MIN; ymax = GPVAL_Y_MAX; mant = (ymax / ymin > 20) ? "1 2 5" : ((ymax / ymin > 3) ? "1 1.5 2 3 4 5 6 8" : "1 1.1 1.2 1.3 1.4 1.5 1.6 1.8 2 2.2 2.5 3 3.5 4 4.5 5 6 7 8 9"); first = 1; do for [k = floor(log10(ymin)) : ceil(log10(ymax))] { do for [m in mant] { v = real(m) * 10.0**k; if (v >= ymin * 0.9999 && v <= ymax * 1.0001) { if (first) { set ytics (sprintf("%g", v) v); first = 0 } else { set ytics add (sprintf("%g", v) v) } } } }'
