package io.distca.server.backend;

import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import io.distca.server.backend.cuda.CudaBackendOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Creates the backend a server was asked for: {@code cpu}, {@code reference} (float64, for checks),
 * {@code cuda}, or {@code auto} (CUDA when a GPU and the built kernels are there, else CPU, with
 * the reason logged). The CUDA backends run on one GPU, chosen by its ordinal: one attention server
 * per GPU.
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
    return create(kind, computeThreads, pinnedPoolBytes, 0);
  }

  /**
   * @param computeThreads CPU backend threads; 0 means one per core
   * @param pinnedPoolBytes cap of the CUDA backend's pinned buffer pool (received frames and outputs
   *     in page-locked memory); 0 turns the pool off
   * @param cudaDevice the GPU of the cuda and auto backends (the CUDA driver's ordinal, after
   *     CUDA_VISIBLE_DEVICES); must be 0 for cpu and reference. With auto, a GPU the driver does not
   *     have is an error where it has others (a wrong ordinal, not a machine without GPUs)
   */
  public static AttentionBackend create(String kind, int computeThreads, long pinnedPoolBytes, int cudaDevice) {
    if (pinnedPoolBytes < 0) {
      throw new IllegalArgumentException("pinned pool bytes must be >= 0 (0: off), got " + pinnedPoolBytes);
    }
    String badDevice = cudaDeviceProblem("CUDA device", cudaDevice, kind);
    if (badDevice != null) {
      throw new IllegalArgumentException(badDevice);
    }
    CudaBackendOptions cuda = (pinnedPoolBytes == 0
        ? new CudaBackendOptions().pinnedReceive(false)
        : new CudaBackendOptions().pinnedPoolBytes(pinnedPoolBytes)).deviceOrdinal(cudaDevice);
    switch (kind) {
      case "cpu":
        return cpu(computeThreads);
      case "reference":
        return new ReferenceAttention();
      case "cuda": {
        String why = CudaSupport.unavailableReason(cuda);
        if (why != null) {
          throw new IllegalStateException("the cuda backend cannot run here: " + why);
        }
        return withCpuFallback(CudaSupport.create(cuda), computeThreads);
      }
      case "auto": {
        int gpus = cudaDevice == 0 ? 0 : CudaSupport.deviceCount();
        if (gpus > 0 && cudaDevice >= gpus) {
          throw new IllegalArgumentException("CUDA device " + cudaDevice + " requested, but the CUDA driver reports "
              + gpus + " GPU(s) (ordinals 0.." + (gpus - 1) + ")");
        }
        String why = CudaSupport.unavailableReason(cuda);
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

  /**
   * What is wrong with GPU {@code cudaDevice} for backend {@code kind}, or null: a negative ordinal,
   * or one other than 0 for a backend that runs on no GPU. {@code name} is the setting as the
   * caller's user knows it (a flag, a field). Whether the driver has that GPU is checked where the
   * backend opens it.
   */
  public static String cudaDeviceProblem(String name, int cudaDevice, String kind) {
    if (cudaDevice < 0) {
      return name + " must be >= 0, got " + cudaDevice;
    }
    if (cudaDevice != 0 && !runsOnGpu(kind)) {
      return name + " " + cudaDevice + " needs the cuda or auto backend, not '" + kind + "'";
    }
    return null;
  }

  /** Whether backend {@code kind} runs on a GPU (cuda, or auto where one is there), i.e. takes a CUDA device. */
  public static boolean runsOnGpu(String kind) {
    return kind.equals("cuda") || kind.equals("auto");
  }

  /**
   * GPUs the CUDA driver reports (after CUDA_VISIBLE_DEVICES), 0 where there is no usable driver:
   * how many attention servers one machine can give a GPU each.
   */
  public static int cudaDeviceCount() {
    return CudaSupport.deviceCount();
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
