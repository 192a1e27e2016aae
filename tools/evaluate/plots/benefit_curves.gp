# The benefit curves the DP chooses from: per layer, balancedness (planning
# windows) against the layer's redundant slots, coloured by the layer's skew.
# One panel per workload, at the D of the per-layer study.
load plots."/common.gp"
C = "benefit_curves"
workloads = distinct(C, 1, "1")
n = words(workloads)
cols = n < 3 ? n : 3
panel_rows = (n + cols - 1) / cols
set terminal pngcairo size cols * 520, panel_rows * 400 + 50
set output sprintf("%s/benefit_curves.png", out)
set multiplot layout panel_rows, cols title "Benefit curves: a layer's balancedness against its redundant slots (colour: layer skew)"
set logscale x 2
set xtics ("0" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64)
set xrange [0.4:90]
set yrange [0:1]
set logscale cb
set cbrange [1:40]
set cbtics ("1" 1, "3" 3, "10" 10, "30" 30)
set cblabel "hottest / mean"
set palette defined (0 "#2c7bb6", 1 "#abd9e9", 2 "#fdae61", 3 "#d7191c")
set xlabel "redundant slots in the layer"
set ylabel "balancedness (planning windows)"
unset key
do for [w in workloads] {
  gpus = system(sprintf("awk -F, 'NR > 1 && $1 == \"%s\" {print $2; exit}' %s", w, csv(C)))
  set title sprintf("%s, D = %s (one line per layer)", w, gpus)
  # A blank line between layers keeps each layer's curve separate.
  layers = sprintf('< awk -F, ''NR > 1 && $1 == "%s" { if ($3 != last) print ""; last = $3; print }'' %s', w, csv(C))
  plot layers using (xr($5)):6:4 with lines lc palette lw 1
}
unset multiplot
