package io.distca.server.backend.cpu;

import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.BatchValidation;

/**
 * Core attention on the CPU for machines without a GPU: varlen batches, per-slice causal masks with
 * any diagonal, MHA/GQA/MQA, head_dim up to 256, bf16/fp16/fp32 inputs with fp32 accumulation, LSE
 * in fp32 natural log. Tiled like FlashAttention (online softmax forward, recomputing backward), so
 * memory per thread is O(tile) whatever the sequence lengths; see {@link ForwardPass} and
 * {@link BackwardPass} for how work is cut into race-free units.
 *
 * <p>Owns a pool of {@link CpuBackendOptions#threads()} threads, stopped by {@link #close()}.
 * Concurrent calls are safe; they share the pool.
 */
public final class CpuBackend implements AttentionBackend {
  public static final String NAME = "cpu";

  private final CpuBackendOptions options;
  private final WorkerPool pool;

  public CpuBackend() {
    this(new CpuBackendOptions());
  }

  public CpuBackend(CpuBackendOptions options) {
    this.options = options.conclude();
    this.pool = new WorkerPool(options.threads(), "distca-cpu-attention-");
  }

  public CpuBackendOptions options() {
    return options;
  }

  @Override
  public String name() {
    return NAME;
  }

  @Override
  public String device() {
    return "cpu x" + options.threads() + " threads";
  }

  @Override
  public void forward(AttentionBatch batch) {
    BatchValidation.requireWellFormed(batch, BatchValidation.Pass.FORWARD);
    new ForwardPass(batch, options).run(pool);
  }

  @Override
  public void backward(AttentionBatch batch) {
    BatchValidation.requireWellFormed(batch, BatchValidation.Pass.BACKWARD);
    new BackwardPass(batch, options, pool.threads()).run(pool);
  }

  /** Waits for running calls (bounded), then stops the threads. Idempotent. */
  @Override
  public void close() {
    pool.close();
  }
}
