# plot.gp — the chart of bench/run.sh. Called as
#   gnuplot -e "dir='DATA-DIR'; out='OUT.png'; ncol=N; title='TITLE'" bench/plot.gp
# (ncol: the last column of thr.dat = number of systems + 1; default 5;
# e2e=0: no end-to-end panel, e2e.dat is not read)
# DATA-DIR holds (written by run.sh; "-" = not measured):
#   thr.dat  entry-size  then MiB/s of each system (header row = system names)
#   ack.dat  "system size"  ack p50  p99  p99.9 (ms)
#   e2e.dat  "system size"  end-to-end p50  p99 (ms)
if (!exists("ncol")) ncol = 5
if (!exists("e2e")) e2e = 1
set terminal pngcairo size 1400,1600 font "DejaVu Sans,11" noenhanced
set output out
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics mytics lc rgb "#dddddd"
set key outside top center horizontal
set logscale y
set format y "%g"
set multiplot layout (e2e ? 3 : 2),1 title title font ",14"

set title "Throughput (MiB/s, log scale; higher is better)"
set ylabel "MiB/s"
set xlabel "entry size"
plot for [c=2:ncol] dir."/thr.dat" using c:xtic(1) title columnheader(c)

set title "Ack latency: append call -> durable ack (ms, log scale; lower is better)"
set ylabel "ms"
set xlabel ""
set xtics rotate by -30
plot dir."/ack.dat" using 2:xtic(1) title "p50", \
     ""           using 3 title "p99", \
     ""           using 4 title "p99.9"

if (e2e) {
set title "End-to-end latency: append call -> tailing reader receives (ms, log scale)"
plot dir."/e2e.dat" using 2:xtic(1) title "p50", \
     ""           using 3 title "p99"
}

unset multiplot
