package io.distca.server.backend.cuda;

/**
 * A batch whose element type or head dimension the loaded kernels do not run (fp32, or a head_dim the
 * fatbin was not built for). The server can route such batches to the CPU backend.
 */
public class UnsupportedShapeException extends IllegalArgumentException {
  public UnsupportedShapeException(String message) {
    super(message);
  }
}
