package io.distca.protocol.message;

/** Frame message types, their wire codes, metadata classes, and whether they carry tensors. */
public enum MessageType {
  HELLO(1, Hello.class, false),
  HELLO_OK(2, HelloOk.class, false),
  ERROR(3, ErrorReply.class, false),
  PING(4, Ping.class, false),
  PONG(5, Ping.class, false),
  FORWARD_REQUEST(16, AttentionRequest.class, true),
  FORWARD_RESPONSE(17, AttentionResponse.class, true),
  BACKWARD_REQUEST(18, AttentionRequest.class, true),
  BACKWARD_RESPONSE(19, AttentionResponse.class, true),
  REGISTER(32, Register.class, false),
  REGISTER_OK(33, RegisterOk.class, false),
  HEARTBEAT(34, Heartbeat.class, false),
  HEARTBEAT_OK(35, HeartbeatOk.class, false),
  PLAN_REQUEST(48, PlanRequest.class, false),
  PLAN_RESPONSE(49, PlanResponse.class, false);

  private static final MessageType[] BY_CODE = new MessageType[256];

  static {
    for (MessageType t : values()) {
      BY_CODE[t.code] = t;
    }
  }

  private final int code;
  private final Class<?> metaClass;
  private final boolean carriesTensors;

  MessageType(int code, Class<?> metaClass, boolean carriesTensors) {
    this.code = code;
    this.metaClass = metaClass;
    this.carriesTensors = carriesTensors;
  }

  public int code() {
    return code;
  }

  public Class<?> metaClass() {
    return metaClass;
  }

  public boolean carriesTensors() {
    return carriesTensors;
  }

  /** @return the type for a wire code, or null when unknown */
  public static MessageType fromCode(int code) {
    return code >= 0 && code < BY_CODE.length ? BY_CODE[code] : null;
  }
}
