# The replica saving: the smallest R at which CRAFT is as balanced as EPLB with
# R = L, per workload and GPU count, against EPLB's own R.
load plots."/common.gp"
S = "replica_saving"
n = int(system(sprintf("awk -F, 'NR > 1 && $3 == \"eplb\"' %s | wc -l", csv(S))))
set terminal pngcairo size 1500, 620
set output sprintf("%s/replica_saving.png", out)
set title "Redundant slots per GPU (R) CRAFT needs to match EPLB's balancedness (missing bar: not reached)"
set logscale y 2
set yrange [0.35:400]
set bmargin 9
set lmargin 12
set ytics ("0" 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)
set ylabel "R (redundant expert slots per GPU)"
set xrange [-0.6:n - 0.4]
set xtics rotate by 45 right font ",9"
set key top left horizontal
set style fill solid 0.7 noborder
set boxwidth 0.35
cell(alg) = rows(S, sprintf('$3 == "%s"', alg))
# A CRAFT budget of -1 means not reached (no bar); 0 is drawn at 0.5, a stub.
bar(r) = r < 0 ? NaN : xr(r)
plot cell("eplb") using ($0 - 0.18):(bar($6)):xtic(sprintf("%s D=%d", strcol(1), $2)) \
         with boxes lc rgb "#1f77b4" title "CRAFT vs EPLB hierarchical", \
     cell("eplb-global") using ($0 + 0.18):(bar($6)) with boxes lc rgb "#2ca02c" \
         title "CRAFT vs EPLB global", \
     cell("eplb") using 0:4 with points ls 3 pt 3 ps 1.5 title "EPLB's R = L"
