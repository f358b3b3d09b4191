package io.distca.server.backend.cuda;

import jcuda.driver.CUdeviceptr;

/**
 * A device pointer whose numeric address can be read, for descriptor arrays that hold device
 * addresses (JCuda keeps the native value of a {@link CUdeviceptr} protected).
 */
final class DeviceAddress extends CUdeviceptr {
  long value() {
    return getNativePointer() + getByteOffset();
  }
}
