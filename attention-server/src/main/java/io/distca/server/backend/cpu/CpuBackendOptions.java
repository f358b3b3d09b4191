package io.distca.server.backend.cpu;

/**
 * Settings of a {@link CpuBackend}, each with a documented default, validated once by
 * {@link #conclude()} (the backend's constructor calls it). Setters fail after conclusion so that a
 * running backend never sees its settings change.
 */
public final class CpuBackendOptions {
  /** Query rows per tile. 64 rows of fp32 at head_dim 128 are 32 KiB: a tile stays in L1/L2. */
  public static final int DEFAULT_QUERY_BLOCK = 64;

  /**
   * Keys per tile. The score loops run along keys, so a tile must be long enough for the JIT's
   * unrolled vector loop (after its alignment pre-loop) to do most of the work; on the 2-core
   * AVX-512 dev VM 64, 128 and 256 were within measurement noise of each other.
   */
  public static final int DEFAULT_KEY_BLOCK = 128;

  /**
   * Most keys one backward work unit owns, rounded up to a multiple of the key block when left at
   * the default. A unit keeps its keys' K, V and dK, dV in fp32 scratch (5 * chunk * head_dim
   * floats, 2.5 MiB at 1024 x 128), so this bounds per-thread memory.
   */
  public static final int DEFAULT_BACKWARD_KEY_CHUNK = 1024;

  /**
   * Work units aimed at per thread when large units are split: enough that longest-first scheduling
   * evens out the tail, few enough that splitting (which costs dQ accumulation) stays rare.
   */
  public static final int DEFAULT_UNITS_PER_THREAD = 4;

  public static final int MAX_THREADS = 1024;
  public static final int MAX_BLOCK = 1024;

  private int threads = Runtime.getRuntime().availableProcessors();
  private int queryBlock = DEFAULT_QUERY_BLOCK;
  private int keyBlock = DEFAULT_KEY_BLOCK;
  private int backwardKeyChunk; // 0: the default, fitted to keyBlock by conclude()
  private int unitsPerThread = DEFAULT_UNITS_PER_THREAD;
  private boolean concluded;

  /** Worker threads of the backend's own pool. Default: {@code Runtime.availableProcessors()}. */
  public CpuBackendOptions threads(int threads) {
    requireOpen();
    this.threads = threads;
    return this;
  }

  public CpuBackendOptions queryBlock(int rows) {
    requireOpen();
    this.queryBlock = rows;
    return this;
  }

  public CpuBackendOptions keyBlock(int keys) {
    requireOpen();
    this.keyBlock = keys;
    return this;
  }

  /** Must be a multiple of {@link #keyBlock()}; default {@link #DEFAULT_BACKWARD_KEY_CHUNK} rounded up to one. */
  public CpuBackendOptions backwardKeyChunk(int keys) {
    requireOpen();
    this.backwardKeyChunk = keys;
    return this;
  }

  public CpuBackendOptions unitsPerThread(int units) {
    requireOpen();
    this.unitsPerThread = units;
    return this;
  }

  public int threads() {
    return threads;
  }

  public int queryBlock() {
    return queryBlock;
  }

  public int keyBlock() {
    return keyBlock;
  }

  public int backwardKeyChunk() {
    return backwardKeyChunk;
  }

  public int unitsPerThread() {
    return unitsPerThread;
  }

  /**
   * Validates every setting; idempotent.
   *
   * @throws IllegalArgumentException naming the first bad setting
   */
  public CpuBackendOptions conclude() {
    if (concluded) {
      return this;
    }
    requireRange("threads", threads, 1, MAX_THREADS);
    requireRange("queryBlock", queryBlock, 1, MAX_BLOCK);
    requireRange("keyBlock", keyBlock, 1, MAX_BLOCK);
    if (backwardKeyChunk == 0) {
      backwardKeyChunk = (DEFAULT_BACKWARD_KEY_CHUNK + keyBlock - 1) / keyBlock * keyBlock;
    }
    requireRange("backwardKeyChunk", backwardKeyChunk, keyBlock, 1 << 20);
    if (backwardKeyChunk % keyBlock != 0) {
      throw new IllegalArgumentException(
          "backwardKeyChunk " + backwardKeyChunk + " must be a multiple of keyBlock " + keyBlock);
    }
    requireRange("unitsPerThread", unitsPerThread, 1, 1024);
    concluded = true;
    return this;
  }

  public boolean isConcluded() {
    return concluded;
  }

  private void requireOpen() {
    if (concluded) {
      throw new IllegalStateException("CpuBackendOptions are concluded and can no longer change");
    }
  }

  private static void requireRange(String name, int value, int min, int max) {
    if (value < min || value > max) {
      throw new IllegalArgumentException(name + " must be in [" + min + ", " + max + "], got " + value);
    }
  }

  @Override
  public String toString() {
    return "CpuBackendOptions{threads=" + threads + ", queryBlock=" + queryBlock + ", keyBlock=" + keyBlock
        + ", backwardKeyChunk=" + backwardKeyChunk + ", unitsPerThread=" + unitsPerThread + "}";
  }
}
