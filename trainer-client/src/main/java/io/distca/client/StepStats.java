package io.distca.client;

/**
 * What one forward or backward call cost: tasks, requests (nano-batches), bytes each way, FLOPs the
 * servers ran, retries, and wall time split into planning and the rest.
 */
public record StepStats(
    int tasks, int requests, long bytesSent, long bytesReceived, double flops, int retries,
    long planNanos, long totalNanos, double planImbalance) {}
