package io.distca.protocol.message;

/**
 * Typed error codes carried by ERROR frames. {@link #closesConnection()} marks framing violations
 * after which the byte stream cannot be trusted; every other error leaves the connection usable.
 */
public enum ErrorCode {
  /** Header magic wrong or header fields inconsistent; the stream is out of sync. */
  MALFORMED_FRAME(true),
  /** Declared frame length above the receiver's maximum. */
  FRAME_TOO_LARGE(true),
  UNSUPPORTED_VERSION(true),
  UNKNOWN_MESSAGE_TYPE(false),
  /** Metadata is not valid JSON or misses or mistypes a field. */
  INVALID_METADATA(false),
  /** The Arrow payload does not parse or does not match the declared tensors. */
  INVALID_PAYLOAD(false),
  INVALID_SHAPE(false),
  INVALID_DTYPE(false),
  INVALID_CU_SEQLENS(false),
  NON_FINITE_INPUT(false),
  LIMIT_EXCEEDED(false),
  UNAUTHENTICATED(true),
  /** The peer (one remote address) already holds as many connections as the server allows it. */
  TOO_MANY_CONNECTIONS(true),
  OVERLOADED(false),
  DRAINING(false),
  DEADLINE_EXCEEDED(false),
  NO_SERVERS(false),
  UNKNOWN_SERVER(false),
  /** A message arrived that this peer does not accept in its current state (e.g. data before HELLO). */
  UNEXPECTED_MESSAGE(false),
  INTERNAL(false);

  private final boolean closesConnection;

  ErrorCode(boolean closesConnection) {
    this.closesConnection = closesConnection;
  }

  public boolean closesConnection() {
    return closesConnection;
  }
}
