set terminal pngcairo size 820,440 font ',10' noenhanced
set output '../../ingest.png'
set datafile missing 'NaN'
set key top right
set grid ytics
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set ylabel 'events/s'
set key off
set title 'End-to-end ingest per store, 1,000,000 pre-filled events, one worker'
plot 'ingest.dat' using 2:3:4:xtic(1) lc rgb '#2ca02c', '' using 0:2:(sprintf('%.0f', $2)) with labels offset 4,0.6 notitle
