package io.distca.server.backend.cuda;

import jcuda.driver.CUdeviceptr;

/**
 * A device pointer whose numeric address can be read, for descriptor arrays that hold device
 * addresses (JCuda keeps the native value of a {@link CUdeviceptr} protected).
 */
final class DeviceAddress extends CUdeviceptr {
  /** A pointer to a numeric device address: the null pointer plus that offset (JCuda adds the two). */
  static CUdeviceptr of(long address) {
    return new DeviceAddress().withByteOffset(address);
  }

  long value() {
    return getNativePointer() + getByteOffset();
  }
}
