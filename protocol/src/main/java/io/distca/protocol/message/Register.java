package io.distca.protocol.message;

import java.util.List;

/**
 * An attention server announces itself to the dispatcher (and again after a dispatcher restart).
 * {@code flopsPerSecond} is its throughput on long tasks (the last calibration point), by which the
 * dispatcher weighs servers; {@code calibration} is the whole table measured at start.
 */
public record Register(
    String serverId,
    String host,
    int port,
    String backend,
    String device,
    long memoryBytes,
    double flopsPerSecond,
    List<ThroughputPoint> calibration) {}
