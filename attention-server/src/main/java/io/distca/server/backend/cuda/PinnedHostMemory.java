package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemHostAlloc;

import jcuda.Pointer;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Page-locked host memory from cuMemHostAlloc: the only host memory an asynchronous copy can read or
 * write without the driver staging it through its own bounce buffer (which would serialize the copy
 * with the host thread). Allocated once per pipeline slot and reused.
 */
final class PinnedHostMemory implements MemorySource<PinnedHostMemory.Block> {
  private final CudaDevice device;

  PinnedHostMemory(CudaDevice device) {
    this.device = device;
  }

  @Override
  public Block allocate(long bytes, String purpose) {
    device.bind();
    Pointer pointer = new Pointer();
    // Portable: usable from any context. Not write-combined: the host reads the outputs back.
    Driver.check("cuMemHostAlloc(" + bytes + " bytes)", "allocating pinned " + purpose,
        () -> cuMemHostAlloc(pointer, bytes, jcuda.driver.JCudaDriver.CU_MEMHOSTALLOC_PORTABLE));
    long address = MemoryUtil.getByteBufferAddress(pointer.getByteBuffer(0, 1));
    return new Block(device, pointer, address, bytes);
  }

  static final class Block extends MemoryBlock {
    private final CudaDevice device;
    private final Pointer pointer;

    private Block(CudaDevice device, Pointer pointer, long address, long bytes) {
      super(address, bytes);
      this.device = device;
      this.pointer = pointer;
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
      Driver.check("cuMemFreeHost(" + bytes() + " bytes)", "freeing a pinned staging block", () -> cuMemFreeHost(pointer));
    }
  }
}
