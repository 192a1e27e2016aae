# Balancedness vs replica budget R, one PNG per workload, a panel per GPU count.
# EPLB is drawn as points: a uniform r needs (E + r) % D == 0, so with these
# shapes only r = 0 (R = 0) and r = D (R = L) exist.
load plots."/common.gp"
B = "balance_vs_budget"
workloads = distinct(B, 1, "1")
do for [w in workloads] {
  gpu_counts = distinct(B, 2, sprintf('$1 == "%s"', w))
  layers = system(sprintf("awk -F, 'NR > 1 && $1 == \"%s\" && $3 == \"eplb\" && $5 > 0 {print $4; exit}' %s", w, csv(B)))
  n = words(gpu_counts)
  cols = n <= 3 ? n : (n == 4 ? 2 : 3)
  panel_rows = (n + cols - 1) / cols
  set terminal pngcairo size cols * 560, panel_rows * 420 + 50
  set output sprintf("%s/balance_%s.png", out, w)
  set multiplot layout panel_rows, cols title sprintf("%s: balancedness vs replica budget R (EPLB with one redundant slot per GPU per layer: R = L = %s)", w, layers)
  set logscale x 2
  set xrange [0.4:160]
  set xtics ("0" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64, "128" 128)
  set xlabel "R: redundant expert slots per GPU, all layers"
  set ylabel "balancedness (mean / max GPU load)"
  first = 1
  do for [d in gpu_counts] {
    # The legend is drawn once, in the first panel.
    if (first) { set key bottom right font ",9" } else { unset key }
    first = 0
    set title sprintf("D = %s GPUs", d)
    sel(alg) = rows(B, sprintf('$1 == "%s" && $2 == %s && $3 == "%s"', w, d, alg))
    plot sel("craft") using (xr($4)):8 with linespoints ls 1 title "CRAFT (DP)", \
         sel("craft-paper") using (xr($4)):8 with points ls 2 title "paper heuristic (its R)", \
         sel("eplb") using (xr($4)):8 with points ls 3 title "EPLB hierarchical (r = 0 or D per layer)", \
         sel("eplb-global") using (xr($4)):8 with points ls 4 title "EPLB global (r = 0 or D per layer)", \
         sel("none") using (xr($4)):8 with points ls 5 title "placement only"
  }
  unset multiplot
  unset logscale x
}
