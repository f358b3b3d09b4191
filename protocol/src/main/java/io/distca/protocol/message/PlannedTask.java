package io.distca.protocol.message;

/**
 * One CA-task of a plan: query rows [q_start, q_end) of document {@code doc} (index into the
 * rank's doc_lengths) with keys [kv_start, kv_end) of the same document, run on {@code server}
 * (index into the plan's servers). With causal masking a query at document position p sees keys at
 * positions {@code <= p} within that range; the usual shard has kv_start = 0 and kv_end = q_end.
 */
public record PlannedTask(int doc, int qStart, int qEnd, int kvStart, int kvEnd, int server) {}
