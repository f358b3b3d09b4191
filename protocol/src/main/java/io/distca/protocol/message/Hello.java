package io.distca.protocol.message;

/** First frame on every connection. {@code role} is trainer, server or dispatcher. */
public record Hello(int protocolVersion, String role, String peerName, String token) {}
