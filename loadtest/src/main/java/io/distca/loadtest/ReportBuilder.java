package io.distca.loadtest;

import io.distca.loadtest.LoadMetrics.CallEvent;
import io.distca.loadtest.LoadMetrics.ServerTally;
import io.distca.loadtest.LoadMetrics.StepTally;
import io.distca.loadtest.LoadReport.Latency;
import io.distca.loadtest.LoadReport.Ratio;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.DoubleAdder;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;

/** Turns what a run recorded into its {@link LoadReport}: summaries, ratios and the verdict. */
final class ReportBuilder {
  private static final double NANOS = 1e9;
  private static final double MILLIS = 1e6;
  private static final int TIMELINE_BUCKETS = 60;

  private final LoadTestOptions o;
  private final LoadMetrics metrics;
  private final List<SpotCheck.Result> checks;
  private final List<String> failures;
  private final int maxListed;

  /**
   * Ceilings measured after the run: memory copy bytes/s, and the kernel-only rates of the embedded
   * backend (null against an external cluster, whose servers' own calibrations are used instead).
   */
  record Ceiling(double memoryCopyBytesPerSecond, Ceilings.KernelRates kernel, String computeSource) {}

  ReportBuilder(LoadTestOptions options, LoadMetrics metrics, List<SpotCheck.Result> checks, List<String> failures,
      int maxListed) {
    this.o = options;
    this.metrics = metrics;
    this.checks = List.copyOf(checks);
    this.failures = List.copyOf(failures);
    this.maxListed = maxListed;
  }

  /** @param serverCeilings every server of the pool, with its FLOP/s ceiling when known (else NaN) */
  LoadReport build(LoadReport.Cluster cluster, LoadReport.Requests requests, Map<String, Double> serverCeilings,
      Ceiling ceiling, long measuredSteps, long wallNanos) {
    Map<Long, StepTally> steps = metrics.steps();
    double measuredSeconds = 0;
    for (StepTally s : steps.values()) {
      measuredSeconds += s.nanos / NANOS;
    }
    double backwardFlops = metrics.backwardFlops();
    double forwardFlops = metrics.flops() - backwardFlops;
    Map<String, Double> ceilings = new LinkedHashMap<>(serverCeilings);
    for (String id : metrics.servers().keySet()) {
      ceilings.putIfAbsent(id, Double.NaN);
    }
    if (ceiling.kernel() != null) {
      double mixed = ceiling.kernel().mixed(forwardFlops, backwardFlops);
      ceilings.replaceAll((id, c) -> mixed);
    }
    double poolCeiling = ceilings.values().stream().mapToDouble(d -> d).filter(d -> !Double.isNaN(d)).sum();

    LoadReport.Totals totals = new LoadReport.Totals(measuredSteps, metrics.forwardCalls(), metrics.backwardCalls(),
        metrics.failedCalls(), metrics.answeredRequests(), metrics.failedRequests(), metrics.retries(),
        metrics.bytesSent(), metrics.bytesReceived(), metrics.flops(), metrics.tokens(), measuredSeconds,
        wallNanos / NANOS);
    List<LoadReport.ServerLoad> servers = serverLoads(ceilings, measuredSeconds);
    List<LoadReport.StepPoint> stepPoints = stepPoints(steps, ceilings.keySet(), poolCeiling);
    LoadReport.Checks checkSummary = checkSummary();
    LoadReport.Roofline roofline = roofline(ceiling, servers, stepPoints, ceilings);
    List<String> verdict = verdict(requests, checkSummary, measuredSteps);
    return new LoadReport(verdict.isEmpty(), verdict, config(), cluster, totals, requests, metrics.requestErrors(),
        latencies(), checkSummary,
        roofline, servers, imbalance(stepPoints, servers), stepPoints, timeline(measuredSeconds));
  }

  private LoadReport.Config config() {
    return new LoadReport.Config(o.ranks, o.distribution().name(), o.tokensPerRank, o.shardTokens, o.model,
        o.headsQ, o.headsKv, o.headDim, o.dtype.wireName(), o.causal, o.layers, o.backward, o.duration == null ? o.steps : 0,
        o.duration == null ? null : o.duration.toMillis() / 1e3, o.warmupSteps, o.seed, o.checkFraction, o.tolerance,
        o.checkBackend);
  }

  private Map<String, Latency> latencies() {
    Map<String, Latency> out = new LinkedHashMap<>();
    for (LatencyPhase phase : LatencyPhase.values()) {
      Histogram h = metrics.histogram(phase);
      if (h.getTotalCount() == 0) {
        continue;
      }
      List<double[]> cdf = new ArrayList<>();
      for (HistogramIterationValue v : h.percentiles(5)) {
        cdf.add(new double[] {v.getValueIteratedTo() / MILLIS, v.getPercentileLevelIteratedTo() / 100});
      }
      out.put(phase.key(), new Latency(phase.description(), h.getTotalCount(), h.getMean() / MILLIS,
          h.getValueAtPercentile(50) / MILLIS, h.getValueAtPercentile(90) / MILLIS, h.getValueAtPercentile(99) / MILLIS,
          h.getValueAtPercentile(99.9) / MILLIS, h.getMaxValue() / MILLIS, cdf));
    }
    return out;
  }

  private List<LoadReport.ServerLoad> serverLoads(Map<String, Double> ceilings, double measuredSeconds) {
    Map<String, ServerTally> tallies = metrics.servers();
    List<LoadReport.ServerLoad> out = new ArrayList<>();
    for (Map.Entry<String, Double> e : ceilings.entrySet()) {
      ServerTally t = tallies.get(e.getKey());
      if (t == null) {
        out.add(new LoadReport.ServerLoad(e.getKey(), 0, 0, 0, 0, 0, 0, 0, 0, 0, e.getValue()));
        continue;
      }
      long requests = t.requests.sum();
      double busy = t.busyNanos.sum() / NANOS;
      out.add(new LoadReport.ServerLoad(e.getKey(), requests, t.failedRequests.sum(), t.tasks.sum(), t.flops.sum(),
          busy, measuredSeconds > 0 ? busy / measuredSeconds : 0, t.bytesIn.sum(), t.bytesOut.sum(),
          requests > 0 ? t.queueNanos.sum() / MILLIS / requests : 0, e.getValue()));
    }
    return out;
  }

  private List<LoadReport.StepPoint> stepPoints(Map<Long, StepTally> steps, Iterable<String> serverIds,
      double poolCeiling) {
    List<LoadReport.StepPoint> out = new ArrayList<>();
    for (Map.Entry<Long, StepTally> e : steps.entrySet()) {
      StepTally s = e.getValue();
      if (s.nanos == 0) {
        continue; // a step whose end was never reached (the run failed inside it)
      }
      double seconds = s.nanos / NANOS;
      double flops = s.flops.sum();
      List<Double> perServer = new ArrayList<>();
      for (String id : serverIds) {
        DoubleAdder f = s.serverFlops.get(id);
        perServer.add(f == null ? 0 : f.sum());
      }
      out.add(new LoadReport.StepPoint(e.getKey(), seconds, s.endNanos / NANOS, s.tokens.sum(), flops,
          s.tokens.sum() / seconds, poolCeiling > 0 ? flops / poolCeiling : Double.NaN, maxOverMean(perServer)));
    }
    return out;
  }

  private static double maxOverMean(List<Double> values) {
    double max = 0;
    double sum = 0;
    for (double v : values) {
      max = Math.max(max, v);
      sum += v;
    }
    return sum > 0 ? max / (sum / values.size()) : Double.NaN;
  }

  private LoadReport.Imbalance imbalance(List<LoadReport.StepPoint> steps, List<LoadReport.ServerLoad> servers) {
    double meanStep = steps.stream().mapToDouble(LoadReport.StepPoint::imbalance).filter(d -> !Double.isNaN(d))
        .average().orElse(Double.NaN);
    double maxStep = steps.stream().mapToDouble(LoadReport.StepPoint::imbalance).filter(d -> !Double.isNaN(d))
        .max().orElse(Double.NaN);
    return new LoadReport.Imbalance(maxOverMean(servers.stream().map(LoadReport.ServerLoad::flops).toList()), meanStep,
        maxStep, metrics.meanPlanImbalance());
  }

  private LoadReport.Roofline roofline(Ceiling ceiling, List<LoadReport.ServerLoad> servers,
      List<LoadReport.StepPoint> steps, Map<String, Double> ceilings) {
    double wireBytes = 0;
    double wireSeconds = 0;
    Histogram receive = metrics.histogram(LatencyPhase.RECEIVE);
    if (receive.getTotalCount() > 0) {
      wireBytes = metrics.bytesSent() + metrics.bytesReceived();
      wireSeconds = receive.getMean() * receive.getTotalCount() / NANOS;
    }
    Ratio transport = Ratio.of("transport (wire vs memory copy)",
        wireSeconds > 0 ? wireBytes / wireSeconds : Double.NaN, ceiling.memoryCopyBytesPerSecond(), "bytes/s");
    double flops = 0;
    double busy = 0;
    for (LoadReport.ServerLoad s : servers) {
      flops += s.flops();
      busy += s.busySeconds();
    }
    double meanCeiling = ceilings.values().stream().mapToDouble(d -> d).filter(d -> !Double.isNaN(d)).average()
        .orElse(Double.NaN);
    Ratio compute = Ratio.of("server compute vs kernel-only", busy > 0 ? flops / busy : Double.NaN, meanCeiling,
        "FLOP/s");
    double measured = steps.stream().mapToDouble(LoadReport.StepPoint::seconds).average().orElse(Double.NaN);
    double ideal = steps.stream().mapToDouble(LoadReport.StepPoint::idealSeconds).average().orElse(Double.NaN);
    Ratio step = Ratio.ofTime("step time (vs perfectly balanced)", measured, ideal);
    return new LoadReport.Roofline(transport, compute, step, ceiling.computeSource());
  }

  private LoadReport.Checks checkSummary() {
    Map<String, Double> maxError = new LinkedHashMap<>();
    List<String> listed = new ArrayList<>();
    long failed = 0;
    for (SpotCheck.Result r : checks) {
      r.errors().forEach((k, v) -> maxError.merge(k, v, Math::max));
      if (!r.passed()) {
        failed++;
        if (listed.size() < maxListed) {
          listed.add("step " + r.step() + ", rank " + r.rank() + ", layer " + r.layer() + ": relative errors "
              + r.errors() + " above " + o.tolerance);
        }
      }
    }
    return new LoadReport.Checks(checks.size(), failed, maxError, listed);
  }

  private List<String> verdict(LoadReport.Requests requests, LoadReport.Checks checkSummary, long measuredSteps) {
    List<String> out = new ArrayList<>();
    if (checkSummary.failed() > 0) {
      out.add(checkSummary.failed() + " of " + checkSummary.checked()
          + " spot-checked layer calls differ from the local reference: " + checkSummary.failures().get(0));
    }
    for (int i = 0; i < failures.size() && i < maxListed; i++) {
      out.add(failures.get(i));
    }
    if (failures.size() > maxListed) {
      out.add("... and " + (failures.size() - maxListed) + " more failures");
    }
    if (!requests.addsUp()) {
      out.add("request counts do not add up: " + requests);
    }
    if (measuredSteps == 0) {
      out.add("no measured step completed");
    }
    return out;
  }

  /** The smallest of 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, ... seconds at least {@code wanted}: readable axis ticks. */
  static double niceBucket(double wanted) {
    for (double decade = 0.1; ; decade *= 10) {
      for (double m : new double[] {1, 2, 2.5, 5}) {
        if (m * decade >= wanted - 1e-12) {
          return m * decade;
        }
      }
    }
  }

  private LoadReport.Timeline timeline(double measuredSeconds) {
    List<CallEvent> events = metrics.events();
    double last = 0;
    for (CallEvent e : events) {
      last = Math.max(last, e.endNanos() / NANOS);
    }
    double span = Math.max(last, measuredSeconds);
    double bucket = niceBucket(span / TIMELINE_BUCKETS);
    int n = Math.max(1, (int) Math.ceil(span / bucket));
    double[] end = new double[n];
    double[] tokens = new double[n];
    double[] sent = new double[n];
    double[] received = new double[n];
    double[] flops = new double[n];
    // a call's work is spread evenly over its duration: a long call adds to every bucket it spans,
    // instead of all at once to the bucket where it ended
    for (CallEvent e : events) {
      double from = Math.max(0, e.startNanos() / NANOS);
      double to = Math.max(from, e.endNanos() / NANOS);
      int first = Math.min(n - 1, (int) (from / bucket));
      int lastBucket = Math.min(n - 1, (int) (to / bucket));
      for (int i = first; i <= lastBucket; i++) {
        double overlap = to > from ? (Math.min(to, (i + 1) * bucket) - Math.max(from, i * bucket)) / (to - from) : 1;
        double share = Math.max(0, overlap) / bucket;
        tokens[i] += e.tokens() * share;
        sent[i] += e.bytesSent() * share;
        received[i] += e.bytesReceived() * share;
        flops[i] += e.flops() * share;
      }
    }
    for (int i = 0; i < n; i++) {
      end[i] = (i + 1) * bucket;
    }
    return new LoadReport.Timeline(bucket, end, tokens, sent, received, flops);
  }
}
