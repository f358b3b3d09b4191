package io.distca.protocol.message;

/**
 * One CA-task inside an attention request: {@code qLen} query rows (taken in order from the
 * request's q tensor) attending to the first {@code kvLen} rows of K/V segment {@code kvSegment}.
 * With causal masking query row i sees keys {@code < kvLen - qLen + i + 1}.
 */
public record TaskSpec(long taskId, int attempt, int qLen, int kvSegment, int kvLen) {}
