package io.distca.protocol.message;

import java.util.List;

/**
 * Metadata of FORWARD_REQUEST and BACKWARD_REQUEST.
 *
 * <p>Tensors (Arrow payload): {@code q} [sum q_len, heads_q, head_dim]; {@code k}, {@code v}
 * [sum kv_segment_lens, heads_kv, head_dim]. Backward adds {@code o}, {@code do} (same shape as q)
 * and {@code lse} (fp32 [heads_q, sum q_len]). K/V segments are shared by the tasks that name them
 * (KV dedup): one copy of a document's keys serves all its query shards on this server.
 */
public record AttentionRequest(
    String job,
    long step,
    long deadlineEpochMs,
    int headsQ,
    int headsKv,
    int headDim,
    String dtype,
    float scale,
    List<TaskSpec> tasks,
    int[] kvSegmentLens) {}
