package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuFuncSetAttribute;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleGetGlobal;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;
import static jcuda.driver.JCudaDriver.cuModuleUnload;

import io.distca.protocol.tensor.DType;
import java.util.Collections;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;

/**
 * The loaded kernel module: the launch geometry of each head dimension it was built for, and its
 * functions, looked up on first use. The geometry is read from the module on this device, because the
 * fatbin holds several architectures whose tiles may differ.
 */
final class AttentionKernels implements AutoCloseable {
  /** Head dimensions whose info global is probed; the module answers for the ones it has. */
  static final int[] CANDIDATE_HEAD_DIMS = {32, 64, 96, 128, 192, 256};

  private final CudaDevice device;
  private final CUmodule module = new CUmodule();
  private final String origin;
  private final Map<Integer, KernelGeometry> geometries;
  private final Map<String, CUfunction> functions = new ConcurrentHashMap<>();
  private final Map<String, Boolean> present = new ConcurrentHashMap<>();
  private boolean closed;

  AttentionKernels(CudaDevice device, KernelImage image) {
    this.device = device;
    this.origin = image.origin();
    device.bind();
    Driver.check("cuModuleLoadData(" + image.bytes().length + " bytes)",
        "loading CUDA kernels from " + origin + " on " + device, () -> cuModuleLoadData(module, image.bytes()));
    try {
      Map<Integer, KernelGeometry> found = new TreeMap<>();
      for (int headDim : CANDIDATE_HEAD_DIMS) {
        KernelGeometry g = readGeometry(headDim);
        if (g != null) {
          found.put(headDim, g);
        }
      }
      if (found.isEmpty()) {
        throw new IllegalStateException("kernel module " + origin + " has no distca_attn_info_d<HD> global: not a DistCA kernel image");
      }
      this.geometries = Collections.unmodifiableMap(found);
    } catch (RuntimeException e) {
      cuModuleUnload(module);
      throw e;
    }
  }

  private KernelGeometry readGeometry(int headDim) {
    String name = DistcaAttnAbi.infoGlobal(headDim);
    CUdeviceptr global = new CUdeviceptr();
    long[] size = new long[1];
    try {
      Driver.check("cuModuleGetGlobal(" + name + ")", "reading launch geometry", () -> cuModuleGetGlobal(global, size, module, name));
    } catch (CudaCallException e) {
      if (e.errorCode() == CUresult.CUDA_ERROR_NOT_FOUND) {
        return null;
      }
      throw e;
    }
    if (size[0] != DistcaAttnAbi.INFO_BYTES) {
      throw new IllegalStateException(name + " is " + size[0] + " bytes, distca_attn_info_t is " + DistcaAttnAbi.INFO_BYTES);
    }
    byte[] info = new byte[DistcaAttnAbi.INFO_BYTES];
    Driver.check("cuMemcpyDtoH(" + name + ")", "reading launch geometry", () -> cuMemcpyDtoH(Pointer.to(info), global, info.length));
    return KernelGeometry.decode(info, headDim);
  }

  /** The geometry for {@code headDim}, or null when the module has no kernels for it. */
  KernelGeometry geometry(int headDim) {
    return geometries.get(headDim);
  }

  Map<Integer, KernelGeometry> geometries() {
    return geometries;
  }

  boolean supports(DType dtype, int headDim) {
    return DistcaAttnAbi.supportsDtype(dtype) && geometries.containsKey(headDim);
  }

  String origin() {
    return origin;
  }

  /**
   * Launches {@code name} with its one by-value parameter block on {@code stream}; skips an empty grid.
   * The dynamic shared-memory limit is raised once per function, before its first launch.
   */
  void launch(String name, long grid, int threads, int sharedBytes, CUstream stream, byte[] params) {
    if (grid == 0) {
      return;
    }
    if (grid < 0 || grid > DistcaAttnAbi.MAX_GRID_X) {
      throw new IllegalArgumentException(name + " grid of " + grid + " blocks is outside [1, " + DistcaAttnAbi.MAX_GRID_X + "]");
    }
    CUfunction function = function(name, sharedBytes);
    Pointer parameters = Pointer.to(Pointer.to(params));
    Driver.check(name + "<<<" + grid + ", " + threads + ", " + sharedBytes + ">>>", "launching on " + device.name(),
        () -> cuLaunchKernel(function, (int) grid, 1, 1, threads, 1, 1, sharedBytes, stream, parameters, null));
  }

  /** Whether the module has kernel {@code name} (some are in some images only: distca_attn.h section 1). */
  boolean hasFunction(String name) {
    return functions.containsKey(name) || present.computeIfAbsent(name, n -> lookup(n) != null);
  }

  /** cuModuleGetFunction, or null where the module has no such function. */
  private CUfunction lookup(String name) {
    CUfunction fn = new CUfunction();
    try {
      Driver.check("cuModuleGetFunction(" + name + ")", "looking up a kernel in " + origin,
          () -> cuModuleGetFunction(fn, module, name));
      return fn;
    } catch (CudaCallException e) {
      if (e.errorCode() == CUresult.CUDA_ERROR_NOT_FOUND) {
        return null;
      }
      throw e;
    }
  }

  private CUfunction function(String name, int sharedBytes) {
    CUfunction f = functions.get(name);
    if (f != null) {
      return f;
    }
    return functions.computeIfAbsent(name, n -> {
      CUfunction fn = lookup(n);
      if (fn == null) {
        throw new IllegalStateException("kernel module " + origin + " has no function " + n);
      }
      if (sharedBytes > 48 * 1024) {
        Driver.check("cuFuncSetAttribute(" + n + ", MAX_DYNAMIC_SHARED_SIZE_BYTES, " + sharedBytes + ")",
            "allowing the kernel's shared memory", () -> cuFuncSetAttribute(
                fn, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes));
      }
      return fn;
    });
  }

  @Override
  public synchronized void close() {
    if (!closed) {
      closed = true;
      device.bind();
      Driver.check("cuModuleUnload", "unloading CUDA kernels", () -> cuModuleUnload(module));
    }
  }
}
