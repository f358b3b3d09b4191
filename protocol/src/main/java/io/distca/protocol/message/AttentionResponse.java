package io.distca.protocol.message;

/**
 * Metadata of FORWARD_RESPONSE and BACKWARD_RESPONSE. Forward tensors: {@code o} [sum q_len,
 * heads_q, head_dim] in the request dtype, {@code lse} fp32 [heads_q, sum q_len]. Backward tensors:
 * {@code dq} like q, {@code dk}, {@code dv} like k and v (summed over every task of a segment).
 */
public record AttentionResponse(
    String job, long step, String server, int tasks, long queueNanos, long computeNanos, int fusedWith) {}
