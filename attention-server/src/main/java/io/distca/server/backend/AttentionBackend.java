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

  @Override
  void close();
}
