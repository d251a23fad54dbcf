# Sourced by benchmarks that report servers' CPU beside `opptak loadgen`
# (benches/tls.sh, benches/cluster-s3.sh).

cpu_ticks() { # pid...: user + system clock ticks so far, summed
  local t=0 p
  for p in "$@"; do
    t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
  done
  echo "$t"
}

cores_over() { # label ticks-before ticks-after start-s end-s: prints the CPU used
  awk -v what="$1" -v c="$(($3 - $2))" -v t0="$4" -v t1="$5" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "\n%s: %.1f CPU s over %.1f s = %.2f cores\n", what, c / hz, t1 - t0, c / hz / (t1 - t0) }'
}
