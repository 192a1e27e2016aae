# Modelled throughput (KV tokens per GPU / step time, relative to placement
# only) against R at the focus D: auto-R's predicted sweep as lines, measured
# layouts as points. A panel per model and GPU memory; the legend has a strip
# of its own under the panels (colour: skew profile, symbol: layout).
load plots."/common.gp"
SW = "throughput_sweep"
TV = "throughput_vs_budget"
focus = system(sprintf("awk -F'\t' '$1 == \"focus_gpus\" {print $2}' %s/values.tsv", data))
models = system(sprintf("awk -F, 'NR > 1 {sub(/-[a-z]+$/, \"\", $1); if (!seen[$1]++) print $1}' %s", csv(SW)))
gpus = distinct(SW, 2, "1")
color(p) = p eq "high" ? "#1f77b4" : "#9467bd"
panel_w = 1.0 / words(gpus)
legend_h = 0.12
panel_h = (0.95 - legend_h) / words(models)
set terminal pngcairo size words(gpus) * 640, words(models) * 420 + 140
set output sprintf("%s/throughput.png", out)
set multiplot title sprintf("Modelled throughput vs R at D = %s (lines: auto-R's prediction on the planning windows; points: layouts replayed on the evaluation windows)", focus)
set logscale x 2
set xrange [0.4:100]
set xtics ("0" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64)
set xlabel "R: redundant expert slots per GPU, all layers"
set offsets graph 0, 0, 0.05, 0.05
set ylabel "throughput relative to placement only"
unset key
do for [mi = 1:words(models)] {
  do for [gi = 1:words(gpus)] {
    m = word(models, mi)
    g = word(gpus, gi)
    set origin (gi - 1) * panel_w, 0.95 - mi * panel_h
    set size panel_w, panel_h
    set title sprintf("%s on %s", m, g)
    sweep(p) = rows(SW, sprintf('$1 == "%s-%s" && $2 == "%s" && $3 == %s', m, p, g, focus))
    point(p, layout) = rows(TV, sprintf('$1 == "%s-%s" && $2 == "%s" && $3 == %s && $5 == "%s"', m, p, g, focus, layout))
    plot for [p in "high low"] sweep(p) using (xr($4)):9 with lines lw 2 lc rgb color(p), \
         for [p in "high low"] point(p, "craft") using (xr($6)):10 with points pt 7 ps 1.4 lc rgb color(p), \
         for [p in "high low"] point(p, "auto") using (xr($6)):10 with points pt 6 ps 2.2 lc rgb color(p), \
         for [p in "high low"] point(p, "eplb") using (xr($6)):10 with points pt 5 ps 1.2 lc rgb color(p), \
         for [p in "high low"] point(p, "eplb-global") using (xr($6)):10 with points pt 13 ps 1.5 lc rgb color(p)
  }
}
# The legend strip: invisible data, visible keys.
set origin 0, 0
set size 1, legend_h
unset border
unset tics
unset xlabel
unset ylabel
unset title
unset grid
unset logscale x
set xrange [0:1]
set yrange [0:1]
set key center center horizontal maxrows 2 width 2 font ",10"
plot NaN with lines lw 2 lc rgb color("high") title "high skew", \
     NaN with lines lw 2 lc rgb color("low") title "low skew", \
     NaN with lines lw 2 lc rgb "#000000" title "auto-R sweep (predicted)", \
     NaN with points pt 7 ps 1.4 lc rgb "#000000" title "CRAFT R = 8", \
     NaN with points pt 6 ps 2.2 lc rgb "#000000" title "auto-R's pick", \
     NaN with points pt 5 ps 1.2 lc rgb "#000000" title "EPLB hierarchical (R = L)", \
     NaN with points pt 13 ps 1.5 lc rgb "#000000" title "EPLB global (R = L)"
unset multiplot
