package io.distca.server.backend;

/**
 * Runs fused core-attention batches. Implementations: the CPU backend (any machine) and the CUDA
 * backend (a later module). A backend is thread-safe for concurrent calls unless it says otherwise;
 * the server calls it from its batch executor only.
 *
 * <p>Inputs are validated by the server before they reach a backend (shapes, dtypes, ranges,
 * finiteness); a backend may assume a well-formed batch.
 */
public interface AttentionBackend extends AutoCloseable {

  /** Short name for logs and metrics: "cpu", "cuda". */
  String name();

  /** Human-readable device description, e.g. "cpu x16 threads" or "NVIDIA H100 80GB HBM3". */
  String device();

  /** Writes O and LSE of every slice. */
  void forward(AttentionBatch batch);

  /** Writes dQ of every slice and dK, dV of every segment. */
  void backward(AttentionBatch batch);

  /**
   * Why this backend can no longer compute anything, or null while it can: a GPU whose context an
   * asynchronous fault has poisoned fails every later batch. Once non-null it stays so; the server
   * then takes no more work and reports itself neither ready nor live, so that the dispatcher plans
   * around it and an orchestrator restarts it.
   */
  default String failure() {
    return null;
  }

  /** Whether this backend runs batches of {@code shape}; the server routes others elsewhere. */
  default boolean supports(io.distca.protocol.model.AttentionShape shape) {
    return true;
  }

  /**
   * Starts a forward batch and returns at once when the backend pipelines (the CUDA backend copies
   * batch n+1 in while batch n computes and batch n-1 copies out); the future completes once the
   * outputs are written. May block while the pipeline is full: that is the back-pressure. The
   * default runs the batch on the calling thread.
   */
  default java.util.concurrent.CompletableFuture<?> submitForward(AttentionBatch batch) {
    forward(batch);
    return java.util.concurrent.CompletableFuture.completedFuture(null);
  }

  /** Backward counterpart of {@link #submitForward}. */
  default java.util.concurrent.CompletableFuture<?> submitBackward(AttentionBatch batch) {
    backward(batch);
    return java.util.concurrent.CompletableFuture.completedFuture(null);
  }

  @Override
  void close();
}
