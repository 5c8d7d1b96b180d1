# tiering.gp — the chart of bench/tiering.sh. Called as
#   gnuplot -e "dat='PLOT.dat'; out='OUT.png'; tend=SECONDS; title='TITLE'" bench/tiering.gp
# PLOT.dat (written by tiering.sh), one row per 1-s sample, space-separated,
# "NaN" = no value:
#   1 t (s since the writer started)
#   2-4 bytes held by server 0, 1, 2 (MiB; du of node.data_dir)
#   5-7 upload lag of server 0, 1, 2 (s; wp_logstore_upload_lag_seconds)
#   8 ingest at the servers (MiB/s over 10 s: ADD request bytes / 3)
#   9 upload (MiB/s over 10 s: wp_logstore_upload_bytes_total, all servers)
#   10 waiting for upload on the server with the most (MiB;
#      wp_logstore_upload_waiting_bytes; each server holds a copy)
# tend: when the writer stopped (a dashed line in every panel).
set terminal pngcairo size 1400,1500 font "DejaVu Sans,11" noenhanced
set output out
set datafile missing "NaN"
set grid lc rgb "#dddddd"
set key outside top center horizontal
set xlabel "seconds since the writer started"
set arrow 1 from tend, graph 0 to tend, graph 1 nohead dt 2 lc rgb "#555555"
set label 1 "writer stops" at tend, graph 0.95 offset 0.5,0 font ",9"
stats dat using 1 nooutput
set xrange [STATS_min:STATS_max]
set multiplot layout 3,1 title title font ",14"

set title "Bytes held on each server (du of its data directory) and bytes it waits to upload"
set ylabel "MiB"
plot dat using 1:2 with lines lw 2 title "server 0 held", \
     ""  using 1:3 with lines lw 2 title "server 1 held", \
     ""  using 1:4 with lines lw 2 title "server 2 held", \
     ""  using 1:10 with lines dt 3 lw 2 lc rgb "#000000" title "waiting for upload (largest of the 3)"

set title "Upload lag: age of the oldest completed segment not yet in object storage"
set ylabel "s"
plot dat using 1:5 with lines lw 2 title "server 0", \
     ""  using 1:6 with lines lw 2 title "server 1", \
     ""  using 1:7 with lines lw 2 title "server 2"

set title "Ingest (ADD bytes at the servers / 3) and upload (sealed segments' bytes), 10-s windows"
set ylabel "MiB/s"
plot dat using 1:8 with lines lw 2 title "ingest", \
     ""  using 1:9 with lines lw 2 title "upload"

unset multiplot
