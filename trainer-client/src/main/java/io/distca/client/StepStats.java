package io.distca.client;

import java.util.List;

/**
 * What one forward or backward call cost: tasks, requests (nano-batches), bytes each way, FLOPs the
 * servers ran, retries, and wall time. {@code planNanos} is the dispatcher's planning time,
 * {@code planWaitNanos} how long this call waited for its plan (the dispatcher gathers all ranks of
 * a step first; later calls of the step reuse the plan), {@code assemblyNanos} the final conversion
 * of merged results into the output tensors, and {@code requestTimings} every request attempt with
 * its phases.
 */
public record StepStats(
    int tasks, int requests, long bytesSent, long bytesReceived, double flops, int retries,
    long planNanos, long totalNanos, double planImbalance,
    long planWaitNanos, long assemblyNanos, List<RequestTiming> requestTimings) {

  public StepStats {
    requestTimings = List.copyOf(requestTimings);
  }

  /** These stats with the final assembly's time added (to it and to the total). */
  StepStats withAssembly(long nanos) {
    return new StepStats(tasks, requests, bytesSent, bytesReceived, flops, retries, planNanos, totalNanos + nanos,
        planImbalance, planWaitNanos, assemblyNanos + nanos, requestTimings);
  }
}
