set terminal pngcairo size 820,440 font ',10' noenhanced
set output '../../store_ops.png'
set datafile missing 'NaN'
set key top right
set grid ytics
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [10:*]
set ylabel 'operations/s (log)'
set title 'Store operations per second (median, bars: min-max)'
set xtics rotate by -30
plot 'store_ops.dat' using 2:3:4:xtic(1) title 'edr-worker' lc rgb '#1f77b4', '' using 5:6:7 title 'Tractus-X SDK manager' lc rgb '#ff7f0e'
