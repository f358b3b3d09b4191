package io.distca.protocol.message;

/** A live attention server as clients see it in a plan. */
public record ServerInfo(String serverId, String host, int port, double flopsPerSecond) {}
