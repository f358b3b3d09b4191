package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetAttribute;

import java.nio.file.Files;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;

/**
 * Whether {@link CudaBackend#open} can work on this machine, answered without retaining a context:
 * the kernel image exists, the JCuda driver library loads (it needs the NVIDIA driver's libcuda),
 * cuInit succeeds and the chosen GPU is Ampere or newer (the fatbin carries sm_80 and sm_90a code).
 */
public final class CudaAvailability {
  /** The oldest architecture the fatbin has machine code for. */
  static final int MIN_COMPUTE_CAPABILITY = 80;

  private CudaAvailability() {}

  /**
   * GPUs the CUDA driver reports (after CUDA_VISIBLE_DEVICES), or 0 where the JCuda driver library
   * does not load or the driver does not initialize. Says nothing about the kernels.
   */
  public static int deviceCount() {
    try {
      Driver.load();
    } catch (LinkageError e) {
      return 0;
    }
    try {
      return Driver.deviceCount("counting GPUs");
    } catch (CudaCallException e) {
      return 0;
    }
  }

  /** @return null when the CUDA backend can be opened with {@code options}, else why not */
  public static String unavailableReason(CudaBackendOptions options) {
    options.conclude();
    if (options.kernelFile() != null) {
      if (!Files.isRegularFile(options.kernelFile())) {
        return "CUDA kernel file " + options.kernelFile() + " does not exist";
      }
    } else if (CudaAvailability.class.getClassLoader().getResource(options.kernelResource()) == null) {
      return "the CUDA kernels were not built into this jar (resource " + options.kernelResource()
          + " missing: the build found no nvcc)";
    }
    try {
      Driver.load();
    } catch (LinkageError e) {
      // (JCuda's message carries its nested stack traces after the first line)
      String message = String.valueOf(e.getMessage()).lines().findFirst().orElse("");
      return "the JCuda driver library did not load (is the NVIDIA driver installed?): " + e.getClass().getSimpleName()
          + ": " + message;
    }
    try {
      int count = Driver.deviceCount("probing for a GPU");
      if (count == 0) {
        return "the CUDA driver reports no GPU";
      }
      int ordinal = options.deviceOrdinal();
      if (ordinal >= count) {
        return "GPU ordinal " + ordinal + " requested but the CUDA driver reports " + count + " GPU(s)";
      }
      CUdevice device = new CUdevice();
      Driver.check("cuDeviceGet", "probing GPU " + ordinal, () -> cuDeviceGet(device, ordinal));
      int[] major = new int[1];
      int[] minor = new int[1];
      Driver.check("cuDeviceGetAttribute", "probing GPU " + ordinal, () -> cuDeviceGetAttribute(
          major, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device));
      Driver.check("cuDeviceGetAttribute", "probing GPU " + ordinal, () -> cuDeviceGetAttribute(
          minor, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
      int capability = major[0] * 10 + minor[0];
      if (capability < MIN_COMPUTE_CAPABILITY) {
        return "GPU " + ordinal + " is sm_" + capability + "; the CUDA kernels need sm_" + MIN_COMPUTE_CAPABILITY + " or newer";
      }
      return null;
    } catch (CudaCallException e) {
      return e.getMessage();
    }
  }
}
