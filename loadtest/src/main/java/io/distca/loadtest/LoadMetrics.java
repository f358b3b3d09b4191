package io.distca.loadtest;

import io.distca.client.RequestTiming;
import io.distca.client.StepStats;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.DoubleAdder;
import java.util.concurrent.atomic.LongAdder;
import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;

/**
 * What the rank threads of a load test record, thread-safe: a latency histogram per
 * {@link LatencyPhase} (nanoseconds, 3 significant digits), one event per finished call for the
 * timelines, per-server tallies from the request timings, and per-step tallies. Only measured steps
 * are recorded (the callers leave warm-up steps out).
 */
final class LoadMetrics {
  private final EnumMap<LatencyPhase, Histogram> histograms = new EnumMap<>(LatencyPhase.class);
  private final List<CallEvent> events = new ArrayList<>();
  private final Map<String, ServerTally> servers = new ConcurrentHashMap<>();
  private final Map<Long, StepTally> steps = new ConcurrentHashMap<>();
  private final LongAdder forwardCalls = new LongAdder();
  private final LongAdder backwardCalls = new LongAdder();
  private final LongAdder failedCalls = new LongAdder();
  private final LongAdder requests = new LongAdder();
  private final LongAdder failedRequests = new LongAdder();
  private final LongAdder retries = new LongAdder();
  private final LongAdder bytesSent = new LongAdder();
  private final LongAdder bytesReceived = new LongAdder();
  private final DoubleAdder flops = new DoubleAdder();
  private final DoubleAdder backwardFlops = new DoubleAdder();
  private final DoubleAdder tokens = new DoubleAdder();
  private final DoubleAdder planImbalanceSum = new DoubleAdder();
  private final LongAdder plans = new LongAdder();
  private final AtomicLong originNanos = new AtomicLong(Long.MIN_VALUE);
  private final Map<String, LongAdder> requestErrors = new ConcurrentHashMap<>();

  /** A call: when it started and finished (since the measured start), and what it moved and computed. */
  record CallEvent(long startNanos, long endNanos, double tokens, long bytesSent, long bytesReceived, double flops) {}

  /** What one server did for this load test's requests. */
  static final class ServerTally {
    final LongAdder requests = new LongAdder();
    final LongAdder tasks = new LongAdder();
    final LongAdder failedRequests = new LongAdder();
    final LongAdder bytesIn = new LongAdder();
    final LongAdder bytesOut = new LongAdder();
    final DoubleAdder flops = new DoubleAdder();
    final DoubleAdder busyNanos = new DoubleAdder();
    final LongAdder queueNanos = new LongAdder();
  }

  /** One measured step across ranks. */
  static final class StepTally {
    final DoubleAdder tokens = new DoubleAdder();
    final DoubleAdder flops = new DoubleAdder();
    final Map<String, DoubleAdder> serverFlops = new ConcurrentHashMap<>();
    volatile long nanos;
    volatile long endNanos;
  }

  LoadMetrics() {
    for (LatencyPhase p : LatencyPhase.values()) {
      histograms.put(p, new ConcurrentHistogram(3));
    }
  }

  /** Starts the measured clock: timelines count from here. */
  void start(long nowNanos) {
    originNanos.compareAndSet(Long.MIN_VALUE, nowNanos);
  }

  boolean started() {
    return originNanos.get() != Long.MIN_VALUE;
  }

  long originNanos() {
    return originNanos.get();
  }

  void record(LatencyPhase phase, long nanos) {
    histograms.get(phase).recordValue(Math.max(0, nanos));
  }

  /**
   * A finished forward or backward call. {@code tokenShare} is the call's share of its step's
   * tokens (tokens / (layers x passes)), so that summing over a step gives the step's tokens.
   */
  void recordCall(long step, boolean backward, StepStats stats, double tokenShare, long finishedNanos) {
    (backward ? backwardCalls : forwardCalls).increment();
    record(backward ? LatencyPhase.BACKWARD_CALL : LatencyPhase.FORWARD_CALL, stats.totalNanos());
    record(LatencyPhase.ASSEMBLE, stats.assemblyNanos());
    retries.add(stats.retries());
    bytesSent.add(stats.bytesSent());
    bytesReceived.add(stats.bytesReceived());
    flops.add(stats.flops());
    if (backward) {
      backwardFlops.add(stats.flops());
    }
    tokens.add(tokenShare);
    StepTally st = steps.computeIfAbsent(step, s -> new StepTally());
    st.tokens.add(tokenShare);
    st.flops.add(stats.flops());
    for (RequestTiming t : stats.requestTimings()) {
      ServerTally server = servers.computeIfAbsent(t.server(), s -> new ServerTally());
      if (!t.answered()) {
        failedRequests.increment();
        server.failedRequests.increment();
        requestErrors.computeIfAbsent(errorKind(t.error()), k -> new LongAdder()).increment();
        continue;
      }
      requests.increment();
      record(LatencyPhase.SEND, t.sendNanos());
      record(LatencyPhase.QUEUE, t.queueNanos());
      record(LatencyPhase.KERNEL, t.computeNanos());
      record(LatencyPhase.RECEIVE, t.receiveNanos());
      record(LatencyPhase.MERGE, t.mergeNanos());
      server.requests.increment();
      server.tasks.add(t.tasks());
      server.bytesIn.add(t.bytesSent());
      server.bytesOut.add(t.bytesReceived());
      server.flops.add(t.flops());
      server.busyNanos.add(t.computeShareNanos());
      server.queueNanos.add(t.queueNanos());
      st.serverFlops.computeIfAbsent(t.server(), s -> new DoubleAdder()).add(t.flops());
    }
    synchronized (events) {
      long end = finishedNanos - originNanos.get();
      events.add(new CallEvent(end - stats.totalNanos(), end, tokenShare, stats.bytesSent(), stats.bytesReceived(),
          stats.flops()));
    }
  }

  /** A rank's first call of a step: how long it waited for the plan, and how balanced the planner says it is. */
  void recordPlan(long waitNanos, double planImbalance) {
    record(LatencyPhase.PLAN, waitNanos);
    planImbalanceSum.add(planImbalance);
    plans.increment();
  }

  double meanPlanImbalance() {
    long n = plans.sum();
    return n == 0 ? Double.NaN : planImbalanceSum.sum() / n;
  }

  /** "ProtocolException: OVERLOADED" out of an exception's text: its simple class name and first clause. */
  static String errorKind(String error) {
    String[] parts = error.split(": ", 3);
    String type = parts[0].substring(parts[0].lastIndexOf('.') + 1);
    return parts.length > 1 ? type + ": " + parts[1] : type;
  }

  /** Failed request attempts of measured steps by kind (a retry that then succeeded still counts here). */
  Map<String, Long> requestErrors() {
    Map<String, Long> out = new TreeMap<>();
    requestErrors.forEach((k, v) -> out.put(k, v.sum()));
    return out;
  }

  void recordFailedCall() {
    failedCalls.increment();
  }

  void recordStep(long step, long nanos, long endNanos) {
    record(LatencyPhase.STEP, nanos);
    StepTally st = steps.computeIfAbsent(step, s -> new StepTally());
    st.nanos = nanos;
    st.endNanos = endNanos - originNanos.get();
  }

  Histogram histogram(LatencyPhase phase) {
    return histograms.get(phase);
  }

  List<CallEvent> events() {
    synchronized (events) {
      return List.copyOf(events);
    }
  }

  Map<String, ServerTally> servers() {
    return new TreeMap<>(servers);
  }

  /** Measured steps in order. */
  Map<Long, StepTally> steps() {
    return new TreeMap<>(steps);
  }

  long forwardCalls() {
    return forwardCalls.sum();
  }

  long backwardCalls() {
    return backwardCalls.sum();
  }

  long failedCalls() {
    return failedCalls.sum();
  }

  long answeredRequests() {
    return requests.sum();
  }

  long failedRequests() {
    return failedRequests.sum();
  }

  long retries() {
    return retries.sum();
  }

  long bytesSent() {
    return bytesSent.sum();
  }

  long bytesReceived() {
    return bytesReceived.sum();
  }

  double flops() {
    return flops.sum();
  }

  /** FLOPs of the measured backward calls (the rest of {@link #flops()} is forward). */
  double backwardFlops() {
    return backwardFlops.sum();
  }

  double tokens() {
    return tokens.sum();
  }
}
