# Planner speed per stage (fastest of several runs, one core) against the paper's
# reported ~10 s for its Python planner.
load plots."/common.gp"
P = "planner_speed"
models = distinct(P, 1, "1")
windows = system(sprintf("awk -F, 'NR == 2 {print $5}' %s", csv(P)))
gpus = system(sprintf("awk -F, 'NR == 2 {print $4}' %s", csv(P)))
stages = int(system(sprintf("awk -F, 'NR > 1 && $1 == \"%s\"' %s | wc -l", word(models, 1), csv(P))))
set terminal pngcairo size 1300, 640
set output sprintf("%s/planner_speed.png", out)
set title sprintf("Planner time per stage, %s load windows, D = %s (fastest of several runs, one core)", windows, gpus)
set logscale y 10
set yrange [0.5:30000]
set ylabel "milliseconds (log)"
set xrange [-0.6:stages - 0.4]
set xtics rotate by 25 right font ",9"
set bmargin 10
set lmargin 18
set style fill solid 0.7 noborder
set boxwidth 0.38
set key top right
set arrow from -0.6, 10000 to stages - 0.4, 10000 nohead dt 2 lc rgb "#d62728"
set label "the paper's planner: about 10 s" at 0, 14000 tc rgb "#d62728"
plot rows(P, sprintf('$1 == "%s"', word(models, 1))) using ($0 - 0.2):8:xtic(7) with boxes \
         lc 1 title word(models, 1), \
     for [i = 2:words(models)] rows(P, sprintf('$1 == "%s"', word(models, i))) \
         using ($0 - 0.2 + 0.4 * (i - 1)):8 with boxes lc i title word(models, i)
