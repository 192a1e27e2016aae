# Shared settings of the evaluation plots. Every script is run as
#   gnuplot -e "data='DIR'; out='DIR'; plots='tools/evaluate/plots'" SCRIPT.gp
# with `data` holding craft-evaluate's CSVs and `out` receiving the PNGs.
set datafile separator ","
set termoption noenhanced
set terminal pngcairo noenhanced font "DejaVu Sans,11" linewidth 1.5
set grid lc rgb "#dddddd"
set key box opaque samplen 2

csv(name) = sprintf("%s/%s.csv", data, name)
# The rows of a CSV that satisfy an awk condition, header dropped.
rows(name, cond) = sprintf("< awk -F, 'NR > 1 && (%s)' %s", cond, csv(name))
# Distinct values of a column (in file order) among rows satisfying `cond`.
distinct(name, column, cond) = system(sprintf( \
    "awk -F, 'NR > 1 && (%s) && !seen[$%d]++ {print $%d}' %s", cond, column, column, csv(name)))
# R = 0 has no place on a log axis: it is drawn at 0.5 and labelled 0.
xr(r) = r > 0 ? r : 0.5
set style line 1 lc rgb "#1f77b4" pt 7 ps 0.9    # CRAFT (DP)
set style line 2 lc rgb "#ff7f0e" pt 9 ps 1.6    # paper heuristic
set style line 3 lc rgb "#d62728" pt 5 ps 1.1 dt 2  # EPLB hierarchical
set style line 4 lc rgb "#2ca02c" pt 13 ps 1.3 dt 3  # EPLB global
set style line 5 lc rgb "#555555" pt 4 ps 1.3    # placement only
