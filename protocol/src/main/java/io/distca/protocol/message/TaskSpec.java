package io.distca.protocol.message;

/**
 * One CA-task inside an attention request: {@code qLen} query rows (taken in order from the
 * request's q tensor) attending to keys {@code [kvStart, kvStart + kvLen)} of K/V segment
 * {@code kvSegment}. With {@code causal}, query row i sees key j of that range iff
 * {@code j <= i + diagonal}; the bottom-right aligned case is {@code diagonal = kvLen - qLen}.
 */
public record TaskSpec(
    long taskId, int attempt, int qLen, int kvSegment, int kvStart, int kvLen, boolean causal, int diagonal) {}
