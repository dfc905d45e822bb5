# outliers.gp -- activation outlier statistics of one model's linear inputs
# before and after smoothing and rotation (issue 16).
# Data: the TSV of tests/bench_outliers (model, transform, layer, input, dim,
# ratio, err_a4, err_rs); run as
#   gnuplot -e "datafile='outliers.tsv'; model='opt-7m'; outfile='BASE'" analysis/plots/outliers.gp
# Top: max/median of the per-channel maxima max_t |x_j| of every linear input
# (x = 4 * layer + input, inputs qkv, fc1/gate-up, fc2/down, o_proj); bottom:
# the relative error of 4-bit per-token quantization of that input, plain and
# with Runtime Smooth first (after rotation: RRS).
if (!exists("plotdir")) { plotdir = "analysis/plots/" }
if (!exists("model")) { model = "opt-7m" }
load plotdir."common.gp"

inp(s) = s eq "qkv" ? 0 : s eq "fc1" ? 1 : s eq "fc2" ? 2 : 3
pos(l, s) = 4 * l + inp(s)
sel(t, v) = (strcol(1) eq model && strcol(2) eq t) ? v : NaN

set xlabel "linear input (4 x layer + {q/k/v, fc1/gate-up, fc2/down, o_proj})"
set grid ytics
set key top right
do for [pass = 1:2] {
    if (pass == 1) { @png_term; set output outfile.".png" } else { @svg_term; set output outfile.".svg" }
    set multiplot layout 2, 1 title model.": activation outliers, calibration windows"
    set ylabel "max / median channel max|x|"
    set logscale y
    plot datafile using (sel("none", pos($3, strcol(4)))):6 skip 1 with linespoints lt 1 ps 0.6 title "none", \
         datafile using (sel("smooth", pos($3, strcol(4)))):6 skip 1 with linespoints lt 2 ps 0.6 title "SmoothQuant 0.5", \
         datafile using (sel("rotate", pos($3, strcol(4)))):6 skip 1 with linespoints lt 3 ps 0.6 title "rotation"
    unset logscale y
    set ylabel "A4 per-token relative error"
    plot datafile using (sel("none", pos($3, strcol(4)))):7 skip 1 with linespoints lt 1 ps 0.6 title "none", \
         datafile using (sel("smooth", pos($3, strcol(4)))):7 skip 1 with linespoints lt 2 ps 0.6 title "SmoothQuant 0.5", \
         datafile using (sel("rotate", pos($3, strcol(4)))):7 skip 1 with linespoints lt 3 ps 0.6 title "rotation", \
         datafile using (sel("none", pos($3, strcol(4)))):8 skip 1 with linespoints lt 4 ps 0.6 title "Runtime Smooth", \
         datafile using (sel("rotate", pos($3, strcol(4)))):8 skip 1 with linespoints lt 5 ps 0.6 title "rotation + Runtime Smooth (RRS)"
    unset multiplot
}
set output
