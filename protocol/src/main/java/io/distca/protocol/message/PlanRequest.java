package io.distca.protocol.message;

/**
 * A trainer rank asks for the placement of its micro-batch's CA-tasks. {@code docLengths} are the
 * documents of this rank in packing order; {@code worldSize} ranks of {@code job} plan step
 * {@code step} together.
 */
public record PlanRequest(
    String job,
    long step,
    int rank,
    int worldSize,
    int headsQ,
    int headsKv,
    int headDim,
    String dtype,
    boolean causal,
    int[] docLengths,
    int shardTokens) {}
