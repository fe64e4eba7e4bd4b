set terminal pngcairo size 820,440 font ',10' noenhanced
set output '../../decode.png'
set datafile missing 'NaN'
set key top right
set grid ytics
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set ylabel 'events per CPU-second (log)'
set title 'Decode + handle vs yajl tree parser, one core'
plot 'decode.dat' using 2:3:4:xtic(1) title 'event_decode + handler' lc rgb '#1f77b4', '' using 5:6:7 title 'yajl_tree_parse + fields' lc rgb '#7f7f7f'
