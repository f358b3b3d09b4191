package io.distca.protocol.message;

/** PING and PONG share this body; PONG echoes the sender's clock. */
public record Ping(long sentNanos) {}
