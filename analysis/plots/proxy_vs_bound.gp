# proxy_vs_bound.gp -- measured per-layer proxy loss (processed basis) against
# each evaluated bound of the QuIP theory, log-log, with the line y = x.
# Left panel: worst-case bounds (names containing "worst"), which every layer
# should satisfy unless the grid clamps (points on or below the line); right
# panel: average-case predictions and the rest (points near the line).
# Data (from `qh report`): proxy_vs_bound.<model>.tsv with columns
#   bound, bits, method, seed, index, name, bound_value, proxy_proc
# `series` lists the bound names to draw (space-separated); when absent it is
# read from column 1.
if (!exists("plotdir")) { plotdir = "analysis/plots/" }
load plotdir."common.gp"
if (!exists("series") || strlen(series) == 0) {
    series = system("awk -F'\t' 'NR > 1 && !seen[$1]++ { printf \"%s \", $1 }' '".datafile."'")
}
worst = ""
other = ""
do for [i = 1:words(series)] {
    w = word(series, i)
    if (strstrt(w, "worst") > 0) { worst = worst." ".w } else { other = other." ".w }
}
n_panels = (words(worst) > 0) + (words(other) > 0)

set logscale xy
set format x "%.0e"
set format y "%.0e"
set mxtics 10
set mytics 10
set size ratio -1
set key outside below left Left reverse maxrows 4 box title ""   # same height in both panels
set samples 200
set bmargin 9                    # room for the x label and the key below it
set xlabel "bound (processed basis)"
set ylabel "measured proxy loss proxy_proc"

# panel(list, heading): one scatter with y = x; point types follow the bound's
# position in `series` so that a bound keeps its colour in both figures.
idx(w) = sum [j = 1:words(series)] (word(series, j) eq w ? j : 0)
panel = 'plot for [k = 1:words(list)] datafile using 7:(strcol(1) eq word(list, k) ? column(8) : NaN) skip 1 with points lt idx(word(list, k)) ps 0.6 title word(list, k), x with lines lc rgb "#666666" dt 2 lw 1.2 title "y = x"'

do for [t in "png svg"] {
    if (t eq "png") {
        set terminal pngcairo size 650 * n_panels + 100, 720 font "DejaVu Sans,11" linewidth 1.5 noenhanced
    } else {
        set terminal svg size 650 * n_panels + 100, 720 font "DejaVu Sans,11" linewidth 1.5 noenhanced background rgb "white"
    }
    set output outfile.".".t
    set multiplot layout 1, n_panels title ttl font ",13"
    if (words(worst) > 0) {
        list = worst
        set title "worst-case bounds (should hold)"
        @panel
    }
    if (words(other) > 0) {
        list = other
        set title "average-case predictions"
        @panel
    }
    unset multiplot
    set output
}
