package io.distca.protocol.message;

/** {@code known} is false when the dispatcher has forgotten the server (restart): it must REGISTER again. */
public record HeartbeatOk(boolean known) {}
