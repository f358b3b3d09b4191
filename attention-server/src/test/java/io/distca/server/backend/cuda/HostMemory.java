package io.distca.server.backend.cuda;

import java.util.concurrent.atomic.AtomicLong;
import jcuda.driver.CUresult;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Plain host memory as a {@link MemorySource}, with a byte budget that fails like the device does
 * (CUDA_ERROR_OUT_OF_MEMORY) and a count of live bytes so that tests catch leaks.
 */
final class HostMemory implements MemorySource<HostMemory.Block> {
  private final long budget;
  final AtomicLong liveBytes = new AtomicLong();
  final AtomicLong allocations = new AtomicLong();

  HostMemory(long budget) {
    this.budget = budget;
  }

  @Override
  public Block allocate(long bytes, String purpose) {
    if (liveBytes.get() + bytes > budget) {
      throw new CudaCallException("malloc(" + bytes + " bytes)", CUresult.CUDA_ERROR_OUT_OF_MEMORY,
          "CUDA_ERROR_OUT_OF_MEMORY", "allocating " + purpose, null);
    }
    liveBytes.addAndGet(bytes);
    allocations.incrementAndGet();
    return new Block(MemoryUtil.allocateMemory(bytes), bytes);
  }

  final class Block extends MemoryBlock {
    Block(long address, long bytes) {
      super(address, bytes);
    }

    @Override
    void free() {
      MemoryUtil.freeMemory(address());
      liveBytes.addAndGet(-bytes());
    }
  }
}
