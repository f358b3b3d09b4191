package io.distca.client;

/** A forward or backward call that could not complete: which tasks, on which server, and why. */
public final class DistcaException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public DistcaException(String message, Throwable cause) {
    super(message, cause);
  }
}
