package io.distca.server.backend.cuda;

import java.nio.file.Path;

/**
 * Settings of a {@link CudaBackend}, each with a documented default, validated once by
 * {@link #conclude()} (the backend's constructor calls it). Setters fail after conclusion so that a
 * running backend never sees its settings change.
 */
public final class CudaBackendOptions {
  /** Where the Maven build packages the kernels (attention-server/src/build/build-cuda-kernels.sh). */
  public static final String DEFAULT_KERNEL_RESOURCE = "io/distca/native/distca_attn.fatbin";

  /**
   * Batches in flight. Three lets the upload of batch n+1, the kernels of batch n and the download of
   * batch n-1 run at once; each slot holds one batch's device buffers and pinned staging.
   */
  public static final int DEFAULT_PIPELINE_DEPTH = 3;

  public static final int MAX_PIPELINE_DEPTH = 16;

  /** Arena sizes grow in steps of 2 MiB, the driver's large-page granularity. */
  public static final long ARENA_GRANULARITY = 2L << 20;

  /**
   * Threads that copy between request tensors and pinned staging (the caller's thread included).
   * Default: half the cores, at most 8: enough to approach host memory bandwidth, few enough to leave
   * the network threads room.
   */
  public static final int DEFAULT_STAGING_THREADS =
      Math.max(1, Math.min(8, Runtime.getRuntime().availableProcessors() / 2));

  public static final int MAX_STAGING_THREADS = 64;

  /**
   * Default cap of the pinned buffer pool (request frames and response tensors in page-locked memory):
   * 3 GiB, three quarters of a server's default buffer memory cap (ServerContext.maxMemoryBytes, 4 GiB),
   * whose allocator bounds what is held in it. A server sets it from its own cap.
   */
  public static final long DEFAULT_PINNED_POOL_BYTES = 3L << 30;

  /** Copies shorter than this go through staging even from pinned memory: an async copy costs microseconds. */
  public static final long DEFAULT_DIRECT_TRANSFER_MIN_BYTES = 256L << 10;

  private long transferChunkBytes;
  private int deviceOrdinal;
  private int stagingThreads = DEFAULT_STAGING_THREADS;
  private int pipelineDepth = DEFAULT_PIPELINE_DEPTH;
  private long initialDeviceBytesPerSlot;
  private long initialPinnedBytesPerSlot;
  private String kernelResource = DEFAULT_KERNEL_RESOURCE;
  private Path kernelFile;
  private boolean pinnedReceive = true;
  private boolean warpSpecializedKernels = true;
  private boolean groupSplits = true;
  private boolean chunkedBackward = true;
  private boolean q128Backward = true;
  private boolean workBands = true;
  private int persistentCtas;
  private long pinnedPoolBytes = DEFAULT_PINNED_POOL_BYTES;
  private long directTransferMinBytes = DEFAULT_DIRECT_TRANSFER_MIN_BYTES;
  private boolean concluded;

  /** GPU to run on. Default 0. */
  public CudaBackendOptions deviceOrdinal(int ordinal) {
    requireOpen();
    this.deviceOrdinal = ordinal;
    return this;
  }

  /** Batches in flight, 1 (no overlap) to {@link #MAX_PIPELINE_DEPTH}. Default {@link #DEFAULT_PIPELINE_DEPTH}. */
  public CudaBackendOptions pipelineDepth(int depth) {
    requireOpen();
    this.pipelineDepth = depth;
    return this;
  }

  /**
   * Device memory each slot allocates up front, so that the first batches of a known size do not pay
   * for cuMemAlloc. Default 0: slots grow on the first batch that needs more.
   */
  public CudaBackendOptions initialDeviceBytesPerSlot(long bytes) {
    requireOpen();
    this.initialDeviceBytesPerSlot = bytes;
    return this;
  }

  /** Pinned host staging each slot allocates up front. Default 0: grows on demand. */
  public CudaBackendOptions initialPinnedBytesPerSlot(long bytes) {
    requireOpen();
    this.initialPinnedBytesPerSlot = bytes;
    return this;
  }

  /** Host copy threads per staging pass, 1 to {@link #MAX_STAGING_THREADS}. Default {@link #DEFAULT_STAGING_THREADS}. */
  public CudaBackendOptions stagingThreads(int threads) {
    requireOpen();
    this.stagingThreads = threads;
    return this;
  }

  /**
   * Chunk size for overlapping a batch's gather with its upload and its download with its scatter.
   * Default 0: no overlap inside a batch (batches still overlap each other). On the H100 machines
   * measured (docs/benchmarks.md), host copies ran about half as fast while DMA ran beside them, so
   * chunking made batches slower; other hosts may differ.
   */
  public CudaBackendOptions transferChunkBytes(long bytes) {
    requireOpen();
    this.transferChunkBytes = bytes;
    return this;
  }

  /** Class-path resource holding the kernel fatbin. Default {@link #DEFAULT_KERNEL_RESOURCE}. */
  public CudaBackendOptions kernelResource(String resource) {
    requireOpen();
    this.kernelResource = resource;
    return this;
  }

  /** A fatbin file that takes precedence over the resource (for kernels built outside Maven). Default none. */
  public CudaBackendOptions kernelFile(Path file) {
    requireOpen();
    this.kernelFile = file;
    return this;
  }

  /**
   * Whether the backend keeps a pool of pinned host buffers that large request frames are received
   * into and response tensors allocated from, so that the GPU copies them directly instead of through
   * staging (see {@link CudaBackend#frameAllocator()}). Default true; false keeps every transfer on
   * the gather/scatter path.
   */
  public CudaBackendOptions pinnedReceive(boolean on) {
    requireOpen();
    this.pinnedReceive = on;
    return this;
  }

  /**
   * Whether the forward and the backward's main kernel run on the warp-specialized TMA kernels where
   * the kernel image has them for the head dimension (head_dim 64 and 128 on sm_90a) and tensor maps can be
   * encoded ({@link TensorMaps}). Default true; false runs distca_attn_fwd_* and distca_attn_bwd_*
   * (to compare the two).
   */
  public CudaBackendOptions warpSpecializedKernels(boolean on) {
    requireOpen();
    this.warpSpecializedKernels = on;
    return this;
  }

  public boolean warpSpecializedKernels() {
    return warpSpecializedKernels;
  }

  /**
   * Whether the warp-specialized backward may split a key tile's GQA group over several work items
   * where its longest-first schedule would otherwise leave SMs idle (few K/V heads, long causal
   * segments; distca_attn.h section 9, {@link FusedBatchPlan#groupSplits}). Default true; false
   * keeps one work item per key tile (to compare the two).
   */
  public CudaBackendOptions groupSplits(boolean on) {
    requireOpen();
    this.groupSplits = on;
    return this;
  }

  public boolean groupSplits() {
    return groupSplits;
  }

  /**
   * Whether the warp-specialized backward of large GQA groups walks the group's query heads in
   * chunks of a few query tiles (distca_attn.h section 10), which keeps the key tiles running side by
   * side on the same Q/dO tiles and dQ rows while the L2 holds them. Default true; false walks
   * head by head (to compare the two).
   */
  public CudaBackendOptions chunkedBackward(boolean on) {
    requireOpen();
    this.chunkedBackward = on;
    return this;
  }

  public boolean chunkedBackward() {
    return chunkedBackward;
  }

  /**
   * Whether the head_dim 64 backward of a batch of long slices runs in steps of 128 query rows where
   * the image has that kernel (distca_attn.h section 13, {@link FusedBatchPlan#q128Steps}). Default
   * true; false keeps the 64-row steps (to compare the two).
   */
  public CudaBackendOptions q128Backward(boolean on) {
    requireOpen();
    this.q128Backward = on;
    return this;
  }

  public boolean q128Backward() {
    return q128Backward;
  }

  /**
   * Whether the persistent warp-specialized kernels take their work list in bands where the host's
   * schedule model finds that the long tiles of every head then start soon enough to pay
   * (distca_attn.h section 11; {@code WorkBands}). Default true; false walks the whole list head by
   * head (to compare the two).
   */
  public CudaBackendOptions workBands(boolean on) {
    requireOpen();
    this.workBands = on;
    return this;
  }

  public boolean workBands() {
    return workBands;
  }

  /**
   * Most CTAs the persistent warp-specialized kernels (forward and backward) run with; they take
   * their tiles from a counter (distca_attn.h sections 2 and 7). Default 0: one per SM. Fewer leave
   * SMs to other work on a shared GPU.
   */
  public CudaBackendOptions persistentCtas(int ctas) {
    requireOpen();
    this.persistentCtas = ctas;
    return this;
  }

  public int persistentCtas() {
    return persistentCtas;
  }

  /** Most bytes the pinned buffer pool holds. Default {@link #DEFAULT_PINNED_POOL_BYTES}; > 0. */
  public CudaBackendOptions pinnedPoolBytes(long bytes) {
    requireOpen();
    this.pinnedPoolBytes = bytes;
    return this;
  }

  /** Shortest copy made directly from or to pinned memory. Default {@link #DEFAULT_DIRECT_TRANSFER_MIN_BYTES}; >= 1. */
  public CudaBackendOptions directTransferMinBytes(long bytes) {
    requireOpen();
    this.directTransferMinBytes = bytes;
    return this;
  }

  public boolean pinnedReceive() {
    return pinnedReceive;
  }

  public long pinnedPoolBytes() {
    return pinnedPoolBytes;
  }

  public long directTransferMinBytes() {
    return directTransferMinBytes;
  }

  public int deviceOrdinal() {
    return deviceOrdinal;
  }

  public int pipelineDepth() {
    return pipelineDepth;
  }

  public long transferChunkBytes() {
    return transferChunkBytes;
  }

  public int stagingThreads() {
    return stagingThreads;
  }

  public long initialDeviceBytesPerSlot() {
    return initialDeviceBytesPerSlot;
  }

  public long initialPinnedBytesPerSlot() {
    return initialPinnedBytesPerSlot;
  }

  public String kernelResource() {
    return kernelResource;
  }

  public Path kernelFile() {
    return kernelFile;
  }

  /** Validates all settings once; later calls are no-ops. */
  public CudaBackendOptions conclude() {
    if (concluded) {
      return this;
    }
    if (deviceOrdinal < 0) {
      throw new IllegalArgumentException("CUDA device ordinal must be >= 0, got " + deviceOrdinal);
    }
    if (pipelineDepth < 1 || pipelineDepth > MAX_PIPELINE_DEPTH) {
      throw new IllegalArgumentException(
          "CUDA pipeline depth must be in [1, " + MAX_PIPELINE_DEPTH + "], got " + pipelineDepth);
    }
    if (stagingThreads < 1 || stagingThreads > MAX_STAGING_THREADS) {
      throw new IllegalArgumentException(
          "staging threads must be in [1, " + MAX_STAGING_THREADS + "], got " + stagingThreads);
    }
    if (transferChunkBytes < 0) {
      throw new IllegalArgumentException("transfer chunk bytes must be >= 0, got " + transferChunkBytes);
    }
    if (initialDeviceBytesPerSlot < 0) {
      throw new IllegalArgumentException("initial device bytes per slot must be >= 0, got " + initialDeviceBytesPerSlot);
    }
    if (initialPinnedBytesPerSlot < 0) {
      throw new IllegalArgumentException("initial pinned bytes per slot must be >= 0, got " + initialPinnedBytesPerSlot);
    }
    if (pinnedPoolBytes <= 0) {
      throw new IllegalArgumentException("pinned pool bytes must be > 0 (turn the pool off with pinnedReceive(false)), got "
          + pinnedPoolBytes);
    }
    if (persistentCtas < 0) {
      throw new IllegalArgumentException("persistent kernel CTAs must be >= 0 (0: one per SM), got " + persistentCtas);
    }
    if (directTransferMinBytes < 1) {
      throw new IllegalArgumentException("direct transfer minimum must be >= 1 byte, got " + directTransferMinBytes);
    }
    if ((kernelResource == null || kernelResource.isBlank()) && kernelFile == null) {
      throw new IllegalArgumentException("CUDA backend needs a kernel resource or a kernel file");
    }
    concluded = true;
    return this;
  }

  private void requireOpen() {
    if (concluded) {
      throw new IllegalStateException("CUDA backend options are concluded and can no longer change");
    }
  }
}
