package io.distca.dispatcher.workload;

/** A workload specification, file or parameter that cannot produce document lengths; the message says why. */
public final class InvalidWorkloadException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  public InvalidWorkloadException(String message) {
    super(message);
  }

  public InvalidWorkloadException(String message, Throwable cause) {
    super(message, cause);
  }
}
