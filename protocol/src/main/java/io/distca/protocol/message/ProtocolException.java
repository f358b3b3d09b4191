package io.distca.protocol.message;

/** A typed protocol error: what went wrong ({@link ErrorCode}), where (a field name), and why. */
public class ProtocolException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final ErrorCode code;
  private final String field;
  private final long retryAfterMs;

  public ProtocolException(ErrorCode code, String field, String message) {
    this(code, field, message, 0, null);
  }

  public ProtocolException(ErrorCode code, String field, String message, long retryAfterMs, Throwable cause) {
    super(code + (field == null ? "" : " [" + field + "]") + ": " + message, cause);
    this.code = code;
    this.field = field;
    this.retryAfterMs = retryAfterMs;
  }

  public static ProtocolException of(ErrorReply reply) {
    return new ProtocolException(reply.code(), reply.field(), reply.message(), reply.retryAfterMs(), null);
  }

  public ErrorCode code() {
    return code;
  }

  public String field() {
    return field;
  }

  public long retryAfterMs() {
    return retryAfterMs;
  }

  /** The message without the code and field prefix. */
  public String detail() {
    String m = getMessage();
    int i = m.indexOf(": ");
    return i < 0 ? m : m.substring(i + 2);
  }

  public ErrorReply toReply() {
    return new ErrorReply(code, detail(), field, retryAfterMs);
  }
}
