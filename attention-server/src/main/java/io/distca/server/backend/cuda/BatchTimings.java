package io.distca.server.backend.cuda;

/**
 * Where one batch's time went. Host phases in nanoseconds of the host clock; device phases in
 * milliseconds between CUDA events on the stream that ran them, so the kernel time excludes copies
 * and queueing. {@code uploadMillis} runs from the first upload to the last; with chunked transfers
 * (CudaBackendOptions#transferChunkBytes) it overlaps the gather, and {@code scatterNanos}, which
 * counts only the host copies, overlaps the download.
 * {@code endToEndNanos} runs from submission to the outputs being in the batch's tensors.
 */
public record BatchTimings(
    long gatherNanos, float uploadMillis, float kernelMillis, float downloadMillis, long scatterNanos,
    long endToEndNanos, long inputBytes, long outputBytes) {}
