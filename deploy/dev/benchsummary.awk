# Summarizes `go test -bench -count N` output: the median of each reported metric per
# benchmark, across the N runs. Usage: awk -f benchsummary.awk bench.txt
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  if (!(name in seen)) { seen[name] = 1; order[++n] = name }
  for (i = 3; i < NF; i += 2) {
    unit = $(i + 1); key = name SUBSEP unit
    if (!(key in cnt)) { units[name] = units[name] " " unit }
    vals[key, ++cnt[key]] = $i
  }
}
function median(key,    k, m, j, t, a) {
  m = cnt[key]
  for (k = 1; k <= m; k++) a[k] = vals[key, k]
  for (k = 2; k <= m; k++) { t = a[k]; j = k - 1; while (j > 0 && a[j] > t) { a[j + 1] = a[j]; j-- }; a[j + 1] = t }
  return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
  printf "\nMedians over %s runs (ratio = ours / baseline; lower is better, 1.0 = no overhead):\n", cnt[order[1] SUBSEP "ratio-p50"]
  printf "%-48s %12s %12s %12s %12s %10s %10s\n", "benchmark", "ours p50", "base p50", "ours p99", "base p99", "ratio p50", "ratio p99"
  for (i = 1; i <= n; i++) {
    b = order[i]
    printf "%-48s %10.0fus %10.0fus %10.0fus %10.0fus %10.2f %10.2f\n", b,
      median(b SUBSEP "ours-p50-ns") / 1000, median(b SUBSEP "base-p50-ns") / 1000,
      median(b SUBSEP "ours-p99-ns") / 1000, median(b SUBSEP "base-p99-ns") / 1000,
      median(b SUBSEP "ratio-p50"), median(b SUBSEP "ratio-p99")
  }
}
