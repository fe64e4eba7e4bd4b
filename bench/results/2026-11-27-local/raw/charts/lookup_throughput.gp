set terminal pngcairo size 820,440 font ',10' noenhanced
set output '../../lookup_throughput.png'
set datafile missing 'NaN'
set key top right
set grid ytics
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set ylabel 'lookups/s'
set xlabel 'concurrent clients'
set title 'Lookup throughput (median, bars: min-max)'
plot 'lookup_throughput.dat' using 2:3:4:xtic(1) title 'floor (bare Redis)', '' using 5:6:7 title 'memory', '' using 8:9:10 title 'postgres'
