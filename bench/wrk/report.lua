-- Print one JSON line of wrk's results (bench/limit.py reads it).
-- The request's headers come from wrk's -H options.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "errors": %d, "status_errors": %d, "timeouts": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, e.status, e.timeout,
    e.connect + e.read + e.write))
end
