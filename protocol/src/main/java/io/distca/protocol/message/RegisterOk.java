package io.distca.protocol.message;

/** The dispatcher's answer: how often to heartbeat and when silence means death. */
public record RegisterOk(long heartbeatIntervalMs, long deadAfterMs) {}
