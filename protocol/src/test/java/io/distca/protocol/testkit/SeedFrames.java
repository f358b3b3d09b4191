package io.distca.protocol.testkit;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.AttentionResponse;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ErrorReply;
import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.HeartbeatOk;
import io.distca.protocol.message.Hello;
import io.distca.protocol.message.HelloOk;
import io.distca.protocol.message.Message;
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
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.protocol.wire.MessageEncoder;
import io.distca.protocol.wire.WireOptions;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.embedded.EmbeddedChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Valid frames to start fuzzing from, encoded by the real {@link MessageEncoder}: every message type
 * with realistic metadata, and attention requests (forward and backward) of random but consistent
 * geometry that an attention server accepts: several tasks over shared K/V segments, GQA, causal
 * and full masks, empty tasks and segments, all three floating dtypes.
 */
public final class SeedFrames {
  private SeedFrames() {}

  /** A seed: what it is, and its bytes. */
  public record Seed(String name, MessageType type, byte[] frame) {}

  /**
   * One seed per control and response message type, plus {@code attentionRequests} random forward
   * and backward requests.
   */
  public static List<Seed> all(BufferAllocator allocator, SplittableRandom rnd, int attentionRequests, String token) {
    List<Seed> seeds = new ArrayList<>();
    long id = 1;
    for (MessageType type : MessageType.values()) {
      if (type == MessageType.FORWARD_REQUEST || type == MessageType.BACKWARD_REQUEST) {
        continue;
      }
      Message m = type.carriesTensors() ? response(allocator, rnd, type, id++) : control(type, id++, token);
      seeds.add(new Seed(type.name(), type, encode(allocator, m)));
    }
    for (int i = 0; i < attentionRequests; i++) {
      boolean backward = i % 2 == 1;
      Message m = attentionRequest(allocator, rnd, backward, id++);
      seeds.add(new Seed((backward ? "BACKWARD_REQUEST" : "FORWARD_REQUEST") + "#" + i, m.type(), encode(allocator, m)));
    }
    return seeds;
  }

  /** The frame of {@code message}, through the real encoder (which closes the message). */
  public static byte[] encode(BufferAllocator allocator, Message message) {
    EmbeddedChannel channel = new EmbeddedChannel(new MessageEncoder(new WireOptions().allocator(allocator)));
    try {
      channel.writeOutbound(message);
      ByteBuf frame = channel.readOutbound();
      try {
        return ByteBufUtil.getBytes(frame);
      } finally {
        frame.release();
      }
    } finally {
      channel.finishAndReleaseAll();
    }
  }

  public static Message control(MessageType type, long requestId, String token) {
    Object meta = switch (type) {
      case HELLO -> new Hello(1, "trainer", "rank-0", token);
      case HELLO_OK -> new HelloOk("attn-0", 256L << 20);
      case ERROR -> new ErrorReply(ErrorCode.OVERLOADED, "queue full", null, 250);
      case PING, PONG -> new Ping(123_456_789L);
      case REGISTER -> new Register("attn-0", "10.0.0.5", 7400, "cpu", "test cpu", 80L << 30, 3.3e11,
          java.util.List.of(new io.distca.protocol.message.ThroughputPoint(128, 128, 1.1e11), new io.distca.protocol.message.ThroughputPoint(2048, 2048, 3.3e11)));
      case REGISTER_OK -> new RegisterOk(1000, 5000);
      case HEARTBEAT -> new Heartbeat("attn-0", 12, 4.5e12, false);
      case HEARTBEAT_OK -> new HeartbeatOk(true);
      case PLAN_REQUEST -> new PlanRequest("job-a", 41, 0, 1, 8, 2, 16, "bf16", true, new int[] {300, 7, 1000}, 256);
      case PLAN_RESPONSE -> new PlanResponse("job-a", 41, 0, List.of(new ServerInfo("attn-0", "10.0.0.5", 7400, 3.3e14)),
          List.of(new PlannedTask(0, 0, 256, 0, 256, 0), new PlannedTask(0, 256, 300, 0, 300, 0)), 1.02, 84_000L);
      default -> throw new IllegalArgumentException(type + " is not a control message");
    };
    return Message.of(type, requestId, meta);
  }

  private static Message response(BufferAllocator allocator, SplittableRandom rnd, MessageType type, long requestId) {
    int q = 3;
    int k = 5;
    TensorSet t = new TensorSet();
    if (type == MessageType.FORWARD_RESPONSE) {
      t.put("o", random(allocator, rnd, DType.BF16, q, 4, 8));
      t.put("lse", random(allocator, rnd, DType.FP32, 4, q));
    } else {
      t.put("dq", random(allocator, rnd, DType.BF16, q, 4, 8));
      t.put("dk", random(allocator, rnd, DType.BF16, k, 2, 8));
      t.put("dv", random(allocator, rnd, DType.BF16, k, 2, 8));
    }
    return Message.of(type, requestId, new AttentionResponse("job-a", 41, "attn-0", 1, 1_500L, 2_750L, 0), t);
  }

  /** A random attention request that passes every check of an attention server with default limits. */
  public static Message attentionRequest(BufferAllocator allocator, SplittableRandom rnd, boolean backward, long requestId) {
    DType dtype = new DType[] {DType.BF16, DType.FP16, DType.FP32}[rnd.nextInt(3)];
    int headsKv = 1 + rnd.nextInt(2);
    int headsQ = headsKv * (1 << rnd.nextInt(3));
    int headDim = new int[] {4, 8, 16}[rnd.nextInt(3)];
    int[] segments = new int[1 + rnd.nextInt(3)];
    for (int i = 0; i < segments.length; i++) {
      segments[i] = rnd.nextInt(10) == 0 ? 0 : 1 + rnd.nextInt(12);
    }
    List<TaskSpec> tasks = new ArrayList<>();
    int queries = 0;
    int taskCount = 1 + rnd.nextInt(4);
    for (int i = 0; i < taskCount; i++) {
      int segment = rnd.nextInt(segments.length);
      int kvStart = rnd.nextInt(segments[segment] + 1);
      int kvLen = rnd.nextInt(segments[segment] - kvStart + 1);
      int qLen = rnd.nextInt(9);
      boolean causal = rnd.nextBoolean();
      int diagonal = rnd.nextBoolean() ? kvLen - qLen : rnd.nextInt(9) - 4;
      tasks.add(new TaskSpec(1000 + i, rnd.nextInt(3), qLen, segment, kvStart, kvLen, causal, diagonal));
      queries += qLen;
    }
    int keys = 0;
    for (int len : segments) {
      keys += len;
    }
    TensorSet t = new TensorSet();
    t.put("q", random(allocator, rnd, dtype, queries, headsQ, headDim));
    t.put("k", random(allocator, rnd, dtype, keys, headsKv, headDim));
    t.put("v", random(allocator, rnd, dtype, keys, headsKv, headDim));
    if (backward) {
      t.put("do", random(allocator, rnd, dtype, queries, headsQ, headDim));
      t.put("lse", random(allocator, rnd, DType.FP32, headsQ, queries));
      t.put("delta", random(allocator, rnd, DType.FP32, headsQ, queries));
    }
    AttentionRequest meta = new AttentionRequest("job-" + rnd.nextInt(3), rnd.nextInt(100), Long.MAX_VALUE / 2, headsQ,
        headsKv, headDim, dtype.wireName(), (float) (1 / Math.sqrt(headDim)), tasks, segments);
    return Message.of(backward ? MessageType.BACKWARD_REQUEST : MessageType.FORWARD_REQUEST, requestId, meta, t);
  }

  /** A tensor of uniform values in [-1, 1). */
  public static Tensor random(BufferAllocator allocator, SplittableRandom rnd, DType dtype, int... shape) {
    Tensor t = Tensor.allocate(allocator, dtype, shape);
    for (long i = 0; i < t.numel(); i++) {
      t.setFloat(i, (float) (rnd.nextDouble() * 2 - 1));
    }
    return t;
  }
}
