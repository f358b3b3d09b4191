package io.distca.protocol.message;

/** An attention server announces itself to the dispatcher (and again after a dispatcher restart). */
public record Register(
    String serverId,
    String host,
    int port,
    String backend,
    String device,
    long memoryBytes,
    double flopsPerSecond) {}
