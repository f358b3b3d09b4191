package io.distca.server.backend.cuda;

/**
 * Where one batch's time went. Host phases in nanoseconds of the host clock; device phases in
 * milliseconds between CUDA events on the stream that ran them, so the kernel time excludes copies
 * and queueing. The upload is chunked behind the gather, so {@code uploadMillis} spans most of the
 * gather too; {@code scatterNanos} counts only the host copies, which overlap the chunked download.
 * {@code endToEndNanos} runs from submission to the outputs being in the batch's tensors.
 */
public record BatchTimings(
    long gatherNanos, float uploadMillis, float kernelMillis, float downloadMillis, long scatterNanos,
    long endToEndNanos, long inputBytes, long outputBytes) {}
