package io.distca.protocol.message;

/**
 * One CA-task of a plan: query rows [q_start, q_end) of document {@code doc} (index into the
 * rank's doc_lengths) with keys [0, kv_len), run on {@code server} (index into the plan's servers).
 */
public record PlannedTask(int doc, int qStart, int qEnd, int kvLen, int server) {}
