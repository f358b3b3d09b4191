package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuCtxSetCurrent;
import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetAttribute;
import static jcuda.driver.JCudaDriver.cuDeviceGetName;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRelease;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRetain;
import static jcuda.driver.JCudaDriver.cuDeviceTotalMem;

import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;

/**
 * One GPU and its primary context, retained once for the backend's lifetime. The primary context is
 * the one the CUDA runtime and other libraries in the process would share, so the backend does not
 * fragment device memory across private contexts. Any thread that touches CUDA calls {@link #bind()}
 * first: the current context is per thread.
 */
public final class CudaDevice implements AutoCloseable {
  private final int ordinal;
  private final CUdevice device = new CUdevice();
  private final CUcontext context = new CUcontext();
  private final String name;
  private final int computeMajor;
  private final int computeMinor;
  private final int multiprocessors;
  private final int maxSharedMemoryPerBlockOptin;
  private final long totalMemoryBytes;
  private final double dramBytesPerSm;
  private boolean closed;

  private CudaDevice(int ordinal) {
    this.ordinal = ordinal;
    int count = Driver.deviceCount("initializing the CUDA driver");
    if (ordinal < 0 || ordinal >= count) {
      throw new IllegalArgumentException("GPU ordinal " + ordinal + " out of range: this machine has " + count + " GPU(s)");
    }
    Driver.check("cuDeviceGet(" + ordinal + ")", "opening GPU " + ordinal, () -> cuDeviceGet(device, ordinal));
    byte[] nameBytes = new byte[256];
    Driver.check("cuDeviceGetName", "reading GPU " + ordinal + "'s name", () -> cuDeviceGetName(nameBytes, nameBytes.length, device));
    int end = 0;
    while (end < nameBytes.length && nameBytes[end] != 0) {
      end++;
    }
    this.name = new String(nameBytes, 0, end, java.nio.charset.StandardCharsets.US_ASCII);
    this.computeMajor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "compute capability major");
    this.computeMinor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "compute capability minor");
    this.multiprocessors = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "multiprocessor count");
    this.maxSharedMemoryPerBlockOptin = attribute(
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "opt-in shared memory per block");
    // memory clock (kHz) x bus width (bits), double data rate: the DRAM's peak bytes/s (0 where the
    // driver reports either as 0 or not at all)
    int memoryClockKhz = optionalAttribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, "memory clock");
    int busBits = optionalAttribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, "memory bus width");
    this.dramBytesPerSm = memoryClockKhz > 0 && busBits > 0 && multiprocessors > 0
        ? 2.0 * memoryClockKhz * 1e3 * busBits / 8 / multiprocessors : 0;
    long[] total = new long[1];
    Driver.check("cuDeviceTotalMem", "reading GPU " + ordinal + "'s memory size", () -> cuDeviceTotalMem(total, device));
    this.totalMemoryBytes = total[0];
    Driver.check("cuDevicePrimaryCtxRetain", "retaining the primary context of GPU " + ordinal,
        () -> cuDevicePrimaryCtxRetain(context, device));
  }

  /** Initializes the driver and retains the primary context of GPU {@code ordinal}. */
  public static CudaDevice open(int ordinal) {
    Driver.load();
    return new CudaDevice(ordinal);
  }

  private int attribute(int attribute, String what) {
    int[] value = new int[1];
    Driver.check("cuDeviceGetAttribute", "reading GPU " + ordinal + "'s " + what,
        () -> cuDeviceGetAttribute(value, attribute, device));
    return value[0];
  }

  /**
   * An attribute that only informs a heuristic (the group-split policy's DRAM bandwidth): 0 where the
   * driver does not report it, rather than a device that fails to open.
   */
  private int optionalAttribute(int attribute, String what) {
    try {
      return attribute(attribute, what);
    } catch (CudaCallException e) {
      return 0;
    }
  }

  /** Makes this device's primary context current on the calling thread. Cheap; call it on entry. */
  public void bind() {
    if (closed) {
      throw new IllegalStateException("CUDA device " + ordinal + " is closed");
    }
    Driver.check("cuCtxSetCurrent", "binding GPU " + ordinal + "'s context to thread " + Thread.currentThread().getName(),
        () -> cuCtxSetCurrent(context));
  }

  public int ordinal() {
    return ordinal;
  }

  public String name() {
    return name;
  }

  public int computeMajor() {
    return computeMajor;
  }

  public int computeMinor() {
    return computeMinor;
  }

  public int multiprocessors() {
    return multiprocessors;
  }

  public int maxSharedMemoryPerBlockOptin() {
    return maxSharedMemoryPerBlockOptin;
  }

  public long totalMemoryBytes() {
    return totalMemoryBytes;
  }

  /**
   * The DRAM's peak bandwidth per SM in bytes/s (memory clock x bus width, double data rate), or 0
   * where the driver does not report it (an H100 SXM: 25.4 GB/s; an H200: 36.5).
   */
  public double dramBytesPerSm() {
    return dramBytesPerSm;
  }

  @Override
  public synchronized void close() {
    if (!closed) {
      closed = true;
      Driver.check("cuDevicePrimaryCtxRelease", "releasing the primary context of GPU " + ordinal,
          () -> cuDevicePrimaryCtxRelease(device));
    }
  }

  @Override
  public String toString() {
    return name + " (GPU " + ordinal + ", sm_" + computeMajor + computeMinor + ", " + multiprocessors + " SMs, "
        + (totalMemoryBytes >> 20) + " MiB, " + String.format(java.util.Locale.ROOT, "%.1f", dramBytesPerSm / 1e9)
        + " GB/s of DRAM per SM)";
  }
}
