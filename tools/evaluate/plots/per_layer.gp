# Where the replicas go: per layer, the redundant slots CRAFT's DP and the
# paper's heuristic give it, next to its skew (hottest expert / mean load).
load plots."/common.gp"
P = "per_layer_allocation"
workloads = distinct(P, 1, "1")
set terminal pngcairo size 1300, 560
do for [w in workloads] {
  first_row(column) = system(sprintf("awk -F, 'NR > 1 && $1 == \"%s\" {print $%d; exit}' %s", w, column, csv(P)))
  gpus = first_row(2)
  budget = first_row(12)
  set output sprintf("%s/per_layer_%s.png", out, w)
  set title sprintf("%s, D = %s: redundant slots per layer at CRAFT R = %s (EPLB: %s in every layer) and layer skew", w, gpus, budget, gpus)
  sel = rows(P, sprintf('$1 == "%s"', w))
  set xlabel "MoE layer"
  set ylabel "redundant slots in the layer (replicas)"
  set y2label "hottest expert / mean expert load (log)"
  set logscale y2
  set y2tics
  set ytics nomirror
  set yrange [0:*]
  set xrange [-1:*]
  set key below center horizontal font ",10"
  set bmargin 6
  set offsets graph 0, 0, 0.08, 0
  set style fill solid 0.6 noborder
  set boxwidth 0.8
  plot sel using 3:6 with boxes lc rgb "#1f77b4" title "CRAFT (DP)", \
       sel using 3:8 with points ls 2 title "paper heuristic", \
       sel using 3:4 axes x1y2 with linespoints lc rgb "#444444" pt 6 ps 0.6 dt 3 \
           title "skew (right axis)"
}
