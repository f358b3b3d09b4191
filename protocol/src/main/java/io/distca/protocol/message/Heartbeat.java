package io.distca.protocol.message;

/** Periodic liveness and load report of a server. */
public record Heartbeat(String serverId, int inflightTasks, double queuedFlops, boolean draining) {}
