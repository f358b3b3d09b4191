package io.distca.protocol.message;

/** Accepts a HELLO and tells the peer the receiver's limits. */
public record HelloOk(String peerName, long maxFrameBytes) {}
