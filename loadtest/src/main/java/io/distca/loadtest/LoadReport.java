package io.distca.loadtest;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Everything a load test measured, as printed ({@link #summary()}), written as JSON
 * ({@link #toJson()}, snake_case keys) and drawn ({@link HtmlReport}). Times in seconds unless a
 * name says otherwise; latencies in milliseconds. Numbers cover the measured steps (warm-up left
 * out) except {@link Requests}, which counts every request of the run.
 */
public record LoadReport(
    boolean passed,
    List<String> failures,
    Config config,
    Cluster cluster,
    Totals totals,
    Requests requests,
    Map<String, Long> requestErrors,
    Map<String, Latency> latencyMs,
    Checks spotChecks,
    Roofline roofline,
    List<ServerLoad> servers,
    Imbalance imbalance,
    List<StepPoint> steps,
    Timeline timeline) {

  /** What was asked for. */
  public record Config(
      int ranks, String workload, int tokensPerRank, int shardTokens, String model, int headsQ, int headsKv,
      int headDim, String dtype, boolean causal, int layers, boolean backward, int steps, Double durationSeconds,
      int warmupSteps, long seed, double checkFraction, double tolerance, String checkBackend) {}

  /** What it ran on. */
  public record Cluster(
      String mode, String dispatcher, int servers, String backend, String device, int computeThreads, String planner) {}

  /** Measured steps: calls, bytes, FLOPs, tokens (a token counts once per step: all its layers and passes). */
  public record Totals(
      long steps, long forwardCalls, long backwardCalls, long failedCalls, long requestsAnswered, long requestsFailed,
      long retries, long bytesSent, long bytesReceived, double flops, double tokens, double measuredSeconds,
      double wallSeconds) {}

  /**
   * Every request attempt of the run, warm-up included, as the clients counted them: each started
   * attempt ends answered or failed, so {@code started == answered + failed}, and likewise tasks.
   */
  public record Requests(long started, long answered, long failed, long tasksSent, long tasksAnswered, long tasksFailed) {
    public boolean addsUp() {
      return started == answered + failed && tasksSent == tasksAnswered + tasksFailed;
    }
  }

  /** One phase's latency distribution; {@code cdf} holds [milliseconds, fraction of samples at or below]. */
  public record Latency(
      String description, long count, double mean, double p50, double p90, double p99, double p999, double max,
      List<double[]> cdf) {}

  /** Layer calls compared with the local reference, and the largest relative error seen per output. */
  public record Checks(long checked, long failed, Map<String, Double> maxError, List<String> failures) {}

  /** Achieved against ceiling, both in {@code unit}; {@code ratio} is 1 at the ceiling and below it otherwise. */
  public record Ratio(String what, double achieved, double ceiling, double ratio, String unit) {
    static Ratio of(String what, double achieved, double ceiling, String unit) {
      return new Ratio(what, achieved, ceiling, ceiling > 0 ? achieved / ceiling : Double.NaN, unit);
    }

    /** A time against its ideal: the ratio is ideal over measured, so that 1 is perfect here too. */
    static Ratio ofTime(String what, double measuredSeconds, double idealSeconds) {
      return new Ratio(what, measuredSeconds, idealSeconds,
          measuredSeconds > 0 ? idealSeconds / measuredSeconds : Double.NaN, "s");
    }
  }

  /** The three ceilings of issue 5: transport vs memory copy, server compute vs kernel-only, step vs perfectly balanced. */
  public record Roofline(Ratio transport, Ratio compute, Ratio step, String computeCeilingSource) {}

  /** One server's share: requests, tasks and FLOPs it served for this run, and how busy its backend was. */
  public record ServerLoad(
      String id, long requests, long failedRequests, long tasks, double flops, double busySeconds, double utilization,
      long bytesIn, long bytesOut, double meanQueueMs, double ceilingFlopsPerSecond) {}

  /** Server FLOPs max over mean: over the whole run, and per step (mean and worst). */
  public record Imbalance(double run, double meanStep, double maxStep, double meanPlanImbalance) {}

  /** One measured step: its time (the slowest rank's), when it ended, and what the ideal balanced step would take. */
  public record StepPoint(
      long step, double seconds, double endSeconds, double tokens, double flops, double tokensPerSecond,
      double idealSeconds, double imbalance) {}

  /** Rates per time bucket since the measured start, bucket {@code i} ending at {@code endSeconds[i]}. */
  public record Timeline(
      double bucketSeconds, double[] endSeconds, double[] tokensPerSecond, double[] bytesSentPerSecond,
      double[] bytesReceivedPerSecond, double[] flopsPerSecond) {}

  /** 0 when the run passed, 1 when a check failed, a call failed or the counts do not add up. */
  public int exitCode() {
    return passed ? 0 : 1;
  }

  public double tokensPerSecond() {
    return totals.measuredSeconds > 0 ? totals.tokens / totals.measuredSeconds : 0;
  }

  private static ObjectMapper mapper() {
    return new ObjectMapper()
        .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
        .enable(SerializationFeature.INDENT_OUTPUT)
        .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);
  }

  public String toJson() {
    try {
      return mapper().writeValueAsString(this);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("load report does not serialize", e);
    }
  }

  public static LoadReport fromJson(String json) throws JsonProcessingException {
    return mapper().readValue(json, LoadReport.class);
  }

  /** The summary table printed at the end of a run. */
  public String summary() {
    StringBuilder b = new StringBuilder();
    Config c = config;
    b.append(f("DistCA load test: %d ranks -> %s cluster of %d %s server(s) (%s)%n", c.ranks, cluster.mode,
        cluster.servers, cluster.backend, cluster.device));
    b.append(f("  workload %s, %d tokens/rank, %s heads %d/%d, head_dim %d, %s, %s, %d layer(s), %s, seed %d%n",
        c.workload, c.tokensPerRank, c.model == null ? "shape" : c.model, c.headsQ, c.headsKv, c.headDim, c.dtype,
        c.causal ? "causal" : "full", c.layers, c.backward ? "forward+backward" : "forward only", c.seed));
    b.append(f("  %d measured step(s) (+%d warm-up) in %.2f s; wall %.2f s%n", totals.steps, c.warmupSteps,
        totals.measuredSeconds, totals.wallSeconds));
    b.append(f("%n  throughput  %,.0f tokens/s   %.3f GFLOP/s   %.1f MB/s (sent %.1f MB, received %.1f MB)%n",
        tokensPerSecond(), rate(totals.flops) / 1e9, rate(totals.bytesSent + totals.bytesReceived) / 1e6,
        totals.bytesSent / 1e6, totals.bytesReceived / 1e6));
    b.append(f("  calls       %d forward, %d backward, %d failed; requests %d answered, %d failed; %d retries%n",
        totals.forwardCalls, totals.backwardCalls, totals.failedCalls, totals.requestsAnswered, totals.requestsFailed,
        totals.retries));
    b.append(f("  whole run   %d request attempts = %d answered + %d failed; %d tasks sent = %d answered + %d failed%n",
        requests.started, requests.answered, requests.failed, requests.tasksSent, requests.tasksAnswered,
        requests.tasksFailed));
    if (!requestErrors.isEmpty()) {
      b.append("  failed attempts (measured steps; retried where they could be): ").append(requestErrors).append('\n');
    }
    b.append(f("%n  %-14s %8s %10s %10s %10s %10s %10s %10s%n", "latency (ms)", "count", "mean", "p50", "p90", "p99",
        "p99.9", "max"));
    for (Map.Entry<String, Latency> e : latencyMs.entrySet()) {
      Latency l = e.getValue();
      b.append(f("  %-14s %8d %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f%n", e.getKey(), l.count, l.mean, l.p50, l.p90,
          l.p99, l.p999, l.max));
    }
    b.append(f("%n  %-34s %14s %14s %8s%n", "roofline", "achieved", "ceiling", "ratio"));
    for (Ratio r : List.of(roofline.transport, roofline.compute, roofline.step)) {
      b.append(f("  %-34s %14s %14s %8.3f%n", r.what, human(r.achieved, r.unit), human(r.ceiling, r.unit), r.ratio));
    }
    b.append(f("  (compute ceiling: %s)%n", roofline.computeCeilingSource));
    b.append(f("%n  %-12s %8s %8s %12s %10s %8s %10s%n", "server", "requests", "tasks", "GFLOP", "busy s", "util",
        "queue ms"));
    for (ServerLoad s : servers) {
      b.append(f("  %-12s %8d %8d %12.3f %10.3f %8.3f %10.3f%n", s.id, s.requests, s.tasks, s.flops / 1e9,
          s.busySeconds, s.utilization, s.meanQueueMs));
    }
    b.append(f("  imbalance (server FLOPs max/mean): run %.3f, per step mean %.3f, worst %.3f; planner's own %.3f%n",
        imbalance.run, imbalance.meanStep, imbalance.maxStep, imbalance.meanPlanImbalance));
    StringBuilder errors = new StringBuilder();
    spotChecks.maxError.forEach((k, v) -> errors.append(errors.length() == 0 ? "" : ", ").append(f("%s %.1e", k, v)));
    b.append(f("%n  spot checks %d layer calls against a local %s computation, %d failed; max relative error %s"
        + " (tolerance %.1e)%n", spotChecks.checked, c.checkBackend, spotChecks.failed,
        errors.length() == 0 ? "n/a" : errors, c.tolerance));
    if (passed) {
      b.append("PASS\n");
    } else {
      b.append("FAIL\n");
      for (String failure : failures) {
        b.append("  - ").append(failure).append('\n');
      }
    }
    return b.toString();
  }

  private double rate(double amount) {
    return totals.measuredSeconds > 0 ? amount / totals.measuredSeconds : 0;
  }

  private static String human(double value, String unit) {
    if (Double.isNaN(value)) {
      return "n/a";
    }
    switch (unit) {
      case "bytes/s":
        return f("%.1f MB/s", value / 1e6);
      case "FLOP/s":
        return f("%.2f GFLOP/s", value / 1e9);
      case "s":
        return f("%.4f s", value);
      default:
        return f("%.4g %s", value, unit);
    }
  }

  private static String f(String format, Object... args) {
    return String.format(Locale.ROOT, format, args);
  }
}
