package io.distca.protocol.message;

/**
 * A typed error. {@code field} names the offending field or tensor (null when the error is about the
 * frame as a whole); {@code retryAfterMs} is set for OVERLOADED and DRAINING.
 */
public record ErrorReply(ErrorCode code, String message, String field, long retryAfterMs) {}
