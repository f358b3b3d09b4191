package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.CU_MEMHOSTREGISTER_PORTABLE;
import static jcuda.driver.JCudaDriver.cuMemHostRegister;
import static jcuda.driver.JCudaDriver.cuMemHostUnregister;

import jcuda.Pointer;
import jcuda.driver.CUresult;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Page-locked host memory: the only host memory an asynchronous copy can read or write without the
 * driver staging it through its own bounce buffer (which would serialize the copy with the host
 * thread). Allocated once per pipeline slot and reused.
 *
 * <p>The block is plain native memory, page-aligned and then page-locked with cuMemHostRegister,
 * rather than cuMemHostAlloc: JCuda's binding of cuMemHostAlloc wraps the block in a ByteBuffer,
 * whose int capacity overflows for blocks of 2 GiB and more (a fused batch of long documents needs
 * such staging), and it then fails after the allocation, leaking it.
 */
final class PinnedHostMemory implements MemorySource<PinnedHostMemory.Block> {
  /** Host page size the block is aligned to (registration pins whole pages). */
  static final long PAGE = 4096;

  private final CudaDevice device;

  PinnedHostMemory(CudaDevice device) {
    this.device = device;
  }

  @Override
  public Block allocate(long bytes, String purpose) {
    if (bytes <= 0) {
      throw new IllegalArgumentException("pinned " + purpose + ": size must be > 0, got " + bytes);
    }
    device.bind();
    long raw;
    try {
      raw = MemoryUtil.allocateMemory(bytes + PAGE);
    } catch (OutOfMemoryError e) {
      throw new CudaCallException("malloc(" + (bytes + PAGE) + " bytes)", CUresult.CUDA_ERROR_OUT_OF_MEMORY,
          "CUDA_ERROR_OUT_OF_MEMORY", "allocating host memory to pin for " + purpose, e);
    }
    long address = (raw + PAGE - 1) & -PAGE;
    Pointer pointer = new AddressPointer(address);
    try {
      // Portable: usable from any context. Not write-combined: the host reads the outputs back.
      Driver.check("cuMemHostRegister(" + bytes + " bytes)", "pinning host memory for " + purpose,
          () -> cuMemHostRegister(pointer, bytes, CU_MEMHOSTREGISTER_PORTABLE));
    } catch (RuntimeException e) {
      MemoryUtil.freeMemory(raw);
      throw e;
    }
    return new Block(device, pointer, raw, address, bytes);
  }

  /** A JCuda pointer to a native address (the constructor is protected in JCuda). */
  private static final class AddressPointer extends Pointer {
    AddressPointer(long address) {
      super(address);
    }
  }

  static final class Block extends MemoryBlock {
    private final CudaDevice device;
    private final Pointer pointer;
    private final long raw;

    private Block(CudaDevice device, Pointer pointer, long raw, long address, long bytes) {
      super(address, bytes);
      this.device = device;
      this.pointer = pointer;
      this.raw = raw;
    }

    Pointer at(long offset) {
      if (offset < 0 || offset > bytes()) {
        throw new IndexOutOfBoundsException("offset " + offset + " outside pinned block of " + bytes() + " bytes");
      }
      return pointer.withByteOffset(offset);
    }

    @Override
    void free() {
      device.bind();
      try {
        Driver.check("cuMemHostUnregister(" + bytes() + " bytes)", "unpinning a staging block",
            () -> cuMemHostUnregister(pointer));
      } finally {
        MemoryUtil.freeMemory(raw);
      }
    }
  }
}
