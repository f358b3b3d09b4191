package io.distca.server.backend;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.wire.LargeFrameAllocator;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Implemented by backends that copy to and from the GPU faster when host tensors lie in page-locked
 * memory of their own (the CUDA backend's pinned buffer pool): the server receives large frames into
 * {@link #frameAllocator()} and allocates outputs through {@link #allocateOutput}, so that the backend
 * moves them with one DMA copy each instead of staging them through a host copy.
 */
public interface PinnedTransfers {
  /** Allocator for large received frames: pinned while the pool can serve, else the channel's own. */
  LargeFrameAllocator frameAllocator();

  /**
   * An uninitialized output tensor in pinned memory, accounted to {@code accounting} like
   * {@link Tensor#allocateUninitialized} (closing it returns the memory), or null when pinned memory
   * cannot serve it (pool off or full, or a batch of {@code batchShape} does not run on this device):
   * the caller allocates ordinary memory then.
   *
   * @throws org.apache.arrow.memory.OutOfMemoryException when {@code accounting}'s limit is reached
   */
  Tensor allocateOutput(BufferAllocator accounting, AttentionShape batchShape, DType dtype, int... shape);

  /** Counters of the pinned path, for metrics and benchmarks. */
  Stats pinnedStats();

  /**
   * @param poolBytes pinned memory held by the pool (leased and idle)
   * @param poolHits buffer requests served by a pooled buffer
   * @param poolMisses buffer requests the pool could not serve (ordinary memory instead)
   * @param directUploadBytes bytes copied to the device straight from pinned tensors
   * @param stagedUploadBytes bytes gathered into staging before their upload
   * @param directDownloadBytes bytes copied from the device straight into pinned output tensors
   * @param stagedDownloadBytes bytes scattered from staging after their download
   */
  record Stats(long poolBytes, long poolHits, long poolMisses, long directUploadBytes, long stagedUploadBytes,
      long directDownloadBytes, long stagedDownloadBytes) {
    public static final Stats NONE = new Stats(0, 0, 0, 0, 0, 0, 0);

    /** Whether any transfer took the direct path. */
    public boolean directUsed() {
      return directUploadBytes > 0 || directDownloadBytes > 0;
    }
  }
}
