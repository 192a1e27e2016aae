# Re-planning under drift: the frontier of balancedness against the share of
# slots moved per re-plan, on the period planned on and on the next one (held
# out). Incremental re-plans at each limit are joined by a line; the fresh and
# stabilised CRAFT plans are single points.
load plots."/common.gp"
S = "replan_drift_summary"
set terminal pngcairo size 1500, 600
set output sprintf("%s/replan.png", out)
budget = system(sprintf("awk -F'\t' '$1 == \"focus_budget\" {print $2}' %s/values.tsv", data))
set multiplot layout 1, 2 title sprintf("Re-planning every period: balancedness vs slots moved (CRAFT R = %s)", budget)
set xlabel "slots moved per re-plan (%)"
set xrange [0:105]
set key bottom right font ",9"
workloads = distinct(S, 1, '$2 == "craft"')
do for [panel = 1:2] {
  col = panel == 1 ? 9 : 10
  set title panel == 1 ? "On the period planned on" : "On the next period (held out)"
  set ylabel "mean balancedness"
  plot for [i = 1:words(workloads)] rows(S, sprintf('$1 == "%s" && $2 == "craft" && $3 ~ /^incremental/', word(workloads, i))) \
           using 7:col with linespoints lc i pt 7 title sprintf("%s incremental (5%%, 10%%, 15%%, 25%%, none)", word(workloads, i)), \
       for [i = 1:words(workloads)] rows(S, sprintf('$1 == "%s" && $2 == "craft" && $3 == "fresh"', word(workloads, i))) \
           using 7:col with points lc i pt 5 ps 1.6 title sprintf("%s fresh", word(workloads, i)), \
       for [i = 1:words(workloads)] rows(S, sprintf('$1 == "%s" && $2 == "craft" && $3 == "stabilised"', word(workloads, i))) \
           using 7:col with points lc i pt 9 ps 1.8 title sprintf("%s stabilised", word(workloads, i))
}
unset multiplot
