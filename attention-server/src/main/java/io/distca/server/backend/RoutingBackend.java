package io.distca.server.backend;

import io.distca.protocol.model.AttentionShape;
import java.util.concurrent.CompletableFuture;

/**
 * A primary backend with a fallback for the shapes it does not run: the CUDA kernels cover bf16 and
 * fp16 at head dims 64 and 128 (and 256 on Hopper), and everything else (fp32, odd head dims) still
 * gets an answer from the CPU backend. Batches never mix shapes, so routing per batch is enough.
 */
final class RoutingBackend implements AttentionBackend, BackendMemory, PinnedTransfers {
  private final AttentionBackend primary;
  private final AttentionBackend fallback;

  RoutingBackend(AttentionBackend primary, AttentionBackend fallback) {
    this.primary = primary;
    this.fallback = fallback;
  }

  private AttentionBackend route(AttentionBatch batch) {
    return primary.supports(batch.shape()) ? primary : fallback;
  }

  @Override
  public String name() {
    return primary.name();
  }

  @Override
  public String device() {
    return primary.device() + " (+ " + fallback.name() + " for other shapes)";
  }

  @Override
  public String failure() {
    String primaryFailure = primary.failure();
    return primaryFailure != null ? primaryFailure : fallback.failure();
  }

  @Override
  public boolean supports(AttentionShape shape) {
    return primary.supports(shape) || fallback.supports(shape);
  }

  @Override
  public void forward(AttentionBatch batch) {
    route(batch).forward(batch);
  }

  @Override
  public void backward(AttentionBatch batch) {
    route(batch).backward(batch);
  }

  @Override
  public CompletableFuture<?> submitForward(AttentionBatch batch) {
    return route(batch).submitForward(batch);
  }

  @Override
  public CompletableFuture<?> submitBackward(AttentionBatch batch) {
    return route(batch).submitBackward(batch);
  }

  @Override
  public long deviceBytes() {
    return primary instanceof BackendMemory m ? m.deviceBytes() : 0;
  }

  @Override
  public long pinnedHostBytes() {
    return primary instanceof BackendMemory m ? m.pinnedHostBytes() : 0;
  }

  @Override
  public io.distca.protocol.wire.LargeFrameAllocator frameAllocator() {
    return primary instanceof PinnedTransfers p ? p.frameAllocator() : io.distca.protocol.wire.LargeFrameAllocator.CHANNEL;
  }

  /** Pinned outputs only for batches the primary runs (the fallback gains nothing from them). */
  @Override
  public io.distca.protocol.tensor.Tensor allocateOutput(org.apache.arrow.memory.BufferAllocator accounting,
      AttentionShape batchShape, io.distca.protocol.tensor.DType dtype, int... shape) {
    return primary instanceof PinnedTransfers p && primary.supports(batchShape)
        ? p.allocateOutput(accounting, batchShape, dtype, shape)
        : null;
  }

  @Override
  public Stats pinnedStats() {
    return primary instanceof PinnedTransfers p ? p.pinnedStats() : Stats.NONE;
  }

  @Override
  public void close() {
    try {
      primary.close();
    } finally {
      fallback.close();
    }
  }
}
