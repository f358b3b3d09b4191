package io.distca.server.backend.cuda;

/** The attention server was built without CUDA kernels (no nvcc at build time) or the fatbin is missing. */
public class KernelsUnavailableException extends IllegalStateException {
  public KernelsUnavailableException(String message) {
    super(message);
  }
}
