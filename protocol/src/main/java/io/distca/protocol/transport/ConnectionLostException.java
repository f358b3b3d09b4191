package io.distca.protocol.transport;

/** The connection closed before the answer arrived; the request may or may not have run. */
public final class ConnectionLostException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public ConnectionLostException(String message) {
    super(message);
  }

  public ConnectionLostException(String message, Throwable cause) {
    super(message, cause);
  }
}
