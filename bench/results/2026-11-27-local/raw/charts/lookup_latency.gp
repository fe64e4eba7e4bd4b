set terminal pngcairo size 820,440 font ',10' noenhanced
set output '../../lookup_latency.png'
set datafile missing 'NaN'
set key top right
set grid ytics
set logscale y
set ylabel 'latency (us, log)'
set xlabel 'percentile'
set xtics ('p0' 0, 'p50' 0.301, 'p90' 1, 'p99' 2, 'p99.9' 3)
set xrange [0:3]
set key top left Left reverse
set multiplot layout 1,2
set title 'Lookup round trip, 1 client'
plot 'lat_floor_1.dat' using 1:2 with lines lw 3 dt 2 lc rgb '#000000' title 'floor (bare Redis)', 'lat_memory_1.dat' using 1:2 with lines lw 2 title 'edr-worker, memory store', 'lat_postgres_1.dat' using 1:2 with lines lw 2 title 'edr-worker, postgres store'
set title 'Lookup round trip, 8 clients'
plot 'lat_floor_8.dat' using 1:2 with lines lw 3 dt 2 lc rgb '#000000' title 'floor (bare Redis)', 'lat_memory_8.dat' using 1:2 with lines lw 2 title 'edr-worker, memory store', 'lat_postgres_8.dat' using 1:2 with lines lw 2 title 'edr-worker, postgres store'
unset multiplot
