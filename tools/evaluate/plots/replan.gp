# Re-planning under drift: weights moved per re-plan with and without
# stabilisation, and the balancedness a re-planned layout keeps on the next
# period next to a layout that is never re-planned.
load plots."/common.gp"
R = "replan_drift"
S = "replan_drift_summary"
n = int(system(sprintf("awk 'END {print NR - 1}' %s", csv(S))))
set terminal pngcairo size 1500, 560
set output sprintf("%s/replan.png", out)
set multiplot layout 1, 2 title "Re-planning every period: cost and benefit"
set title "Mean GB copied over GPU links per re-plan (88 MB experts)"
set style fill solid 0.7 noborder
set boxwidth 0.27
set xrange [-0.6:n - 0.4]
set yrange [0:*]
set xtics rotate by 30 right font ",9"
set ylabel "GB per re-plan"
set key top left font ",9"
set bmargin 7
plot rows(S, "1") using ($0 - 0.28):7:xtic(sprintf("%s %s", strcol(1), strcol(2))) with boxes \
         lc rgb "#aaaaaa" title "as planned", \
     "" using 0:8 with boxes lc rgb "#1f77b4" title "stabilised", \
     "" using ($0 + 0.28):9 with boxes lc rgb "#d62728" title "stabilised, cross-node part"
budget = system(sprintf("awk -F'\t' '$1 == \"focus_budget\" {print $2}' %s/values.tsv", data))
set title sprintf("Balancedness on the next period (CRAFT R = %s)", budget)
set xrange [*:*]
set yrange [*:*]
set xtics norotate font ",10"
set xlabel "period planned on"
set ylabel "balancedness of the following period"
set key bottom left font ",9"
workloads = distinct(R, 1, "1")
plot for [i = 1:words(workloads)] rows(R, sprintf('$1 == "%s" && $2 == "craft"', word(workloads, i))) \
         using 4:15 with linespoints lc i pt 7 title sprintf("%s re-planned", word(workloads, i)), \
     for [i = 1:words(workloads)] rows(R, sprintf('$1 == "%s" && $2 == "craft"', word(workloads, i))) \
         using 4:17 with linespoints lc i pt 6 dt 2 title sprintf("%s never re-planned", word(workloads, i))
unset multiplot
