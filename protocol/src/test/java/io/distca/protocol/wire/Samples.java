package io.distca.protocol.wire;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.AttentionResponse;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.HeartbeatOk;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.HelloOk;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.PlanRequest;
import io.distca.protocol.message.PlanResponse;
import io.distca.protocol.message.PlannedTask;
import io.distca.protocol.message.Register;
import io.distca.protocol.message.RegisterOk;
import io.distca.protocol.message.ServerInfo;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.TensorSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.BufferAllocator;

/** One realistic metadata record per message type, and the tensors each tensor message carries. */
final class Samples {
  static final int Q_TOKENS = 5;
  static final int KV_TOKENS = 7;
  static final int HEADS_Q = 4;
  static final int HEADS_KV = 2;
  static final int HEAD_DIM = 8;

  private Samples() {}

  static Object meta(MessageType type) {
    return switch (type) {
      case HELLO -> new Hello(1, "trainer", "rank-0", "s3cret-token");
      case HELLO_OK -> new HelloOk("attn-0", 256L << 20);
      case ERROR -> new ErrorReply(ErrorCode.OVERLOADED, "queue \"full\" \u2013 try later", null, 250);
      case PING -> new Ping(123_456_789_012L);
      case PONG -> new Ping(-5L);
      case FORWARD_REQUEST, BACKWARD_REQUEST -> attentionRequest();
      case FORWARD_RESPONSE, BACKWARD_RESPONSE -> new AttentionResponse("job-a", 41, "attn-0", 2, 1_500L, 2_750_000L, 3);
      case REGISTER -> new Register("attn-0", "10.0.0.5", 7400, "cuda", "NVIDIA H100 80GB HBM3", 80L << 30, 3.3e14,
          java.util.List.of(new io.distca.protocol.message.ThroughputPoint(128, 128, 1.6e14), new io.distca.protocol.message.ThroughputPoint(2048, 2048, 3.3e14)));
      case REGISTER_OK -> new RegisterOk(1000, 5000);
      case HEARTBEAT -> new Heartbeat("attn-0", 12, 4.5e12, true);
      case HEARTBEAT_OK -> new HeartbeatOk(false);
      case PLAN_REQUEST -> new PlanRequest("job-a", 41, 3, 8, 32, 8, 128, "bf16", true, new int[] {4096, 128, 65536}, 1024);
      case PLAN_RESPONSE -> new PlanResponse("job-a", 41, 3,
          List.of(new ServerInfo("attn-0", "10.0.0.5", 7400, 3.3e14), new ServerInfo("attn-1", "10.0.0.6", 7400, 2.9e14)),
          List.of(new PlannedTask(0, 0, 2048, 0, 2048, 1), new PlannedTask(0, 2048, 4096, 0, 4096, 0)),
          0.031, 84_000L);
    };
  }

  static AttentionRequest attentionRequest() {
    return new AttentionRequest("job-a", 41, 1_767_225_600_000L, HEADS_Q, HEADS_KV, HEAD_DIM, "bf16", 0.35355338f,
        List.of(new TaskSpec(9001, 0, 3, 0, 0, 4, true, 1), new TaskSpec(9002, 1, 2, 1, 1, 2, false, 0)),
        new int[] {4, 3});
  }

  /** Tensor names and shapes of a tensor message type, in wire order; {@code lse} is always fp32. */
  static Map<String, int[]> tensorShapes(MessageType type) {
    Map<String, int[]> shapes = new LinkedHashMap<>();
    int[] q = {Q_TOKENS, HEADS_Q, HEAD_DIM};
    int[] kv = {KV_TOKENS, HEADS_KV, HEAD_DIM};
    int[] lse = {HEADS_Q, Q_TOKENS};
    switch (type) {
      case FORWARD_REQUEST -> {
        shapes.put("q", q);
        shapes.put("k", kv);
        shapes.put("v", kv);
      }
      case FORWARD_RESPONSE -> {
        shapes.put("o", q);
        shapes.put("lse", lse);
      }
      case BACKWARD_REQUEST -> {
        shapes.put("q", q);
        shapes.put("k", kv);
        shapes.put("v", kv);
        shapes.put("do", q);
        shapes.put("lse", lse);
        shapes.put("delta", lse);
      }
      case BACKWARD_RESPONSE -> {
        shapes.put("dq", q);
        shapes.put("dk", kv);
        shapes.put("dv", kv);
      }
      default -> throw new IllegalArgumentException(type + " carries no tensors");
    }
    return shapes;
  }

  static DType dtypeOf(String tensor, DType dtype) {
    return tensor.equals("lse") || tensor.equals("delta") ? DType.FP32 : dtype;
  }

  /** The tensors of {@code type} filled with pattern {@code seed + column index}. */
  static TensorSet tensors(BufferAllocator allocator, MessageType type, DType dtype, long seed) {
    TensorSet set = new TensorSet();
    int column = 0;
    for (Map.Entry<String, int[]> e : tensorShapes(type).entrySet()) {
      set.put(e.getKey(), WireTestBase.patternTensor(allocator, dtypeOf(e.getKey(), dtype), seed + column++, e.getValue()));
    }
    return set;
  }
}
