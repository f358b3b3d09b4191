package io.distca.server.backend.cuda;

import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemFree;

import jcuda.driver.CUdeviceptr;

/** Device memory from cuMemAlloc, for {@link GrowOnlyArena}s. */
final class DeviceMemory implements MemorySource<DeviceMemory.Block> {
  private final CudaDevice device;

  DeviceMemory(CudaDevice device) {
    this.device = device;
  }

  @Override
  public Block allocate(long bytes, String purpose) {
    device.bind();
    DeviceAddress pointer = new DeviceAddress();
    Driver.check("cuMemAlloc(" + bytes + " bytes)", "allocating " + purpose + " on " + device.name(),
        () -> cuMemAlloc(pointer, bytes));
    return new Block(device, pointer, bytes);
  }

  static final class Block extends MemoryBlock {
    private final CudaDevice device;
    private final DeviceAddress pointer;

    private Block(CudaDevice device, DeviceAddress pointer, long bytes) {
      super(pointer.value(), bytes);
      this.device = device;
      this.pointer = pointer;
    }

    CUdeviceptr at(long offset) {
      if (offset < 0 || offset > bytes()) {
        throw new IndexOutOfBoundsException("offset " + offset + " outside device block of " + bytes() + " bytes");
      }
      return pointer.withByteOffset(offset);
    }

    @Override
    void free() {
      device.bind();
      Driver.check("cuMemFree(" + bytes() + " bytes)", "freeing a device arena block", () -> cuMemFree(pointer));
    }
  }
}
