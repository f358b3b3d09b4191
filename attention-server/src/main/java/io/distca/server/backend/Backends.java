package io.distca.server.backend;

import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import io.distca.server.backend.cuda.CudaBackendOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Creates the backend a server was asked for: {@code cpu}, {@code reference} (float64, for checks),
 * {@code cuda}, or {@code auto} (CUDA when a GPU and the built kernels are there, else CPU, with
 * the reason logged).
 */
public final class Backends {
  private static final Logger LOG = LoggerFactory.getLogger(Backends.class);

  private Backends() {}

  /** @param computeThreads CPU backend threads; 0 means one per core */
  public static AttentionBackend create(String kind, int computeThreads) {
    return create(kind, computeThreads, CudaBackendOptions.DEFAULT_PINNED_POOL_BYTES);
  }

  /**
   * @param computeThreads CPU backend threads; 0 means one per core
   * @param pinnedPoolBytes cap of the CUDA backend's pinned buffer pool (received frames and outputs
   *     in page-locked memory); 0 turns the pool off
   */
  public static AttentionBackend create(String kind, int computeThreads, long pinnedPoolBytes) {
    if (pinnedPoolBytes < 0) {
      throw new IllegalArgumentException("pinned pool bytes must be >= 0 (0: off), got " + pinnedPoolBytes);
    }
    CudaBackendOptions cuda = pinnedPoolBytes == 0
        ? new CudaBackendOptions().pinnedReceive(false)
        : new CudaBackendOptions().pinnedPoolBytes(pinnedPoolBytes);
    switch (kind) {
      case "cpu":
        return cpu(computeThreads);
      case "reference":
        return new ReferenceAttention();
      case "cuda":
        return withCpuFallback(CudaSupport.create(cuda), computeThreads);
      case "auto": {
        String why = CudaSupport.unavailableReason();
        if (why == null) {
          try {
            return withCpuFallback(CudaSupport.create(cuda), computeThreads);
          } catch (RuntimeException e) {
            why = "opening the CUDA backend failed: " + e;
          }
        }
        LOG.info("backend auto: using the CPU backend ({})", why);
        return cpu(computeThreads);
      }
      default:
        throw new IllegalArgumentException("unknown backend '" + kind + "' (cpu, cuda, auto, reference)");
    }
  }

  /** Shapes the GPU kernels lack (fp32, other head dims) run on the CPU instead of failing. */
  private static AttentionBackend withCpuFallback(AttentionBackend gpu, int threads) {
    return new RoutingBackend(gpu, cpu(threads));
  }

  private static AttentionBackend cpu(int threads) {
    CpuBackendOptions options = new CpuBackendOptions();
    if (threads > 0) {
      options.threads(threads);
    }
    return new CpuBackend(options);
  }
}
