package io.distca.server;

import io.distca.protocol.message.AttentionRequest;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.message.TaskSpec;
import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.model.CostModel;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.PinnedTransfers;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Checks every field of an attention request against its tensors and the server's limits, and turns
 * it into backend views plus freshly allocated outputs. Each problem becomes a {@link
 * ProtocolException} naming the field, so the client learns exactly what to fix.
 */
final class RequestValidator {
  private final RequestLimits limits;
  private final PinnedTransfers pinned;

  RequestValidator(RequestLimits limits) {
    this(limits, null);
  }

  /**
   * @param pinned where outputs go when it can serve them (the CUDA backend's pinned pool: the GPU then
   *     downloads straight into them); null, or a null answer, allocates them from the server's allocator
   */
  RequestValidator(RequestLimits limits, PinnedTransfers pinned) {
    this.limits = limits;
    this.pinned = pinned;
  }

  /** Takes ownership of {@code message}: on failure it is closed before the exception leaves. */
  PreparedRequest prepare(Message message, BufferAllocator allocator) {
    TensorSet outputs = null;
    try {
      Phase phase = phaseOf(message.type());
      AttentionRequest meta = message.meta(AttentionRequest.class);
      AttentionShape shape = shapeOf(meta);
      checkTasks(meta);
      int[] segLens = meta.kvSegmentLens();
      long[] segStart = new long[segLens.length + 1];
      for (int i = 0; i < segLens.length; i++) {
        if (segLens[i] < 0) {
          throw invalid(ErrorCode.INVALID_CU_SEQLENS, "kv_segment_lens[" + i + "]", "must be >= 0, got " + segLens[i]);
        }
        segStart[i + 1] = segStart[i] + segLens[i];
      }
      long totalKv = segStart[segLens.length];
      long totalQ = 0;
      for (TaskSpec t : meta.tasks()) {
        totalQ += t.qLen();
      }
      if (totalQ > limits.maxQueryTokens()) {
        throw invalid(ErrorCode.LIMIT_EXCEEDED, "tasks", totalQ + " query tokens exceed the limit of " + limits.maxQueryTokens());
      }
      if (totalKv > limits.maxKvTokens()) {
        throw invalid(ErrorCode.LIMIT_EXCEEDED, "kv_segment_lens", totalKv + " key tokens exceed the limit of " + limits.maxKvTokens());
      }
      int tq = (int) totalQ;
      int tk = (int) totalKv;
      TensorSet in = message.tensors();
      if (in == null) {
        throw invalid(ErrorCode.INVALID_PAYLOAD, null, message.type() + " carries no tensors");
      }
      Tensor q = tensor(in, "q", shape.dtype(), tq, shape.headsQ(), shape.headDim());
      Tensor k = tensor(in, "k", shape.dtype(), tk, shape.headsKv(), shape.headDim());
      Tensor v = tensor(in, "v", shape.dtype(), tk, shape.headsKv(), shape.headDim());
      Tensor dO = null;
      Tensor lse = null;
      Tensor delta = null;
      if (phase == Phase.BACKWARD) {
        if (in.get("o") != null && in.get("delta") == null) {
          throw invalid(ErrorCode.INVALID_PAYLOAD, "delta", "a backward request carries delta = rowsum(do * o), "
              + "fp32 [heads_q, Q], instead of o (docs/protocol.md)");
        }
        dO = tensor(in, "do", shape.dtype(), tq, shape.headsQ(), shape.headDim());
        lse = tensor(in, "lse", DType.FP32, shape.headsQ(), tq);
        delta = tensor(in, "delta", DType.FP32, shape.headsQ(), tq);
      }
      int expected = phase == Phase.FORWARD ? 3 : 6;
      if (in.size() != expected) {
        throw invalid(ErrorCode.INVALID_PAYLOAD, null,
            message.type() + " carries " + in.size() + " tensors " + in.asMap().keySet() + ", expected " + expected);
      }
      if (limits.checkFinite()) {
        for (var e : in.asMap().entrySet()) {
          long bad = FiniteCheck.firstNonFinite(e.getValue(), e.getKey().equals("lse"));
          if (bad >= 0) {
            throw invalid(ErrorCode.NON_FINITE_INPUT, e.getKey(),
                "element " + bad + " is " + e.getValue().getFloat(bad));
          }
        }
      }

      outputs = new TensorSet();
      List<KvSegment> segments = new ArrayList<>(segLens.length);
      Tensor dk = null;
      Tensor dv = null;
      if (phase == Phase.FORWARD) {
        outputs.put("o", output(allocator, shape, shape.dtype(), tq, shape.headsQ(), shape.headDim()));
        outputs.put("lse", output(allocator, shape, DType.FP32, shape.headsQ(), tq));
      } else {
        outputs.put("dq", output(allocator, shape, shape.dtype(), tq, shape.headsQ(), shape.headDim()));
        // each into the set at once, so that a later allocation failure closes it with the set
        dk = output(allocator, shape, shape.dtype(), tk, shape.headsKv(), shape.headDim());
        outputs.put("dk", dk);
        dv = output(allocator, shape, shape.dtype(), tk, shape.headsKv(), shape.headDim());
        outputs.put("dv", dv);
      }
      for (int i = 0; i < segLens.length; i++) {
        int from = (int) segStart[i];
        int to = (int) segStart[i + 1];
        segments.add(phase == Phase.FORWARD
            ? KvSegment.forward(k.sliceRows(from, to), v.sliceRows(from, to))
            : new KvSegment(k.sliceRows(from, to), v.sliceRows(from, to), dk.sliceRows(from, to), dv.sliceRows(from, to)));
      }
      List<QuerySlice> slices = new ArrayList<>(meta.tasks().size());
      Tensor outO = outputs.get("o");
      Tensor outLse = outputs.get("lse");
      Tensor outDq = outputs.get("dq");
      double flops = 0;
      int row = 0;
      for (TaskSpec t : meta.tasks()) {
        int end = row + t.qLen();
        Tensor qs = q.sliceRows(row, end);
        if (phase == Phase.FORWARD) {
          slices.add(QuerySlice.forward(t.kvSegment(), t.kvStart(), t.kvLen(), t.causal(), t.diagonal(),
              qs, outO.sliceRows(row, end), new LseView(outLse, row)));
        } else {
          slices.add(QuerySlice.backward(t.kvSegment(), t.kvStart(), t.kvLen(), t.causal(), t.diagonal(),
              qs, new LseView(lse, row), new LseView(delta, row), dO.sliceRows(row, end), outDq.sliceRows(row, end)));
        }
        double f = CostModel.forwardFlops(t.qLen(), t.kvLen(), shape.headsQ(), shape.headDim(), t.causal(), t.diagonal());
        flops += phase == Phase.FORWARD ? f : 2.5 * f;
        row = end;
      }
      return new PreparedRequest(message, meta, phase, shape, segments, slices, outputs, flops, totalQ);
    } catch (RuntimeException | Error e) {
      if (outputs != null) {
        outputs.close();
      }
      message.close();
      if (e instanceof Error err) {
        throw err;
      }
      if (e instanceof org.apache.arrow.memory.OutOfMemoryException) {
        // the buffer cap is full for now: the client should retry later (or elsewhere), not quarantine this server
        throw new ProtocolException(ErrorCode.OVERLOADED, null,
            "no buffer memory for the outputs (allocator holds " + allocator.getAllocatedMemory() + " of "
                + allocator.getLimit() + " bytes)", 100, e);
      }
      throw e instanceof ProtocolException ? (ProtocolException) e
          : new ProtocolException(ErrorCode.INTERNAL, null, "validating the request failed: " + e, 0, e);
    }
  }

  /** An uninitialized output: in pinned memory when the backend offers it, else from {@code allocator}. */
  private Tensor output(BufferAllocator allocator, AttentionShape shape, DType dtype, int... dims) {
    Tensor t = pinned == null ? null : pinned.allocateOutput(allocator, shape, dtype, dims);
    return t != null ? t : Tensor.allocateUninitialized(allocator, dtype, dims);
  }

  private static Phase phaseOf(MessageType type) {
    switch (type) {
      case FORWARD_REQUEST:
        return Phase.FORWARD;
      case BACKWARD_REQUEST:
        return Phase.BACKWARD;
      default:
        throw invalid(ErrorCode.UNEXPECTED_MESSAGE, null, type + " is not an attention request");
    }
  }

  private static AttentionShape shapeOf(AttentionRequest meta) {
    if (meta.job() == null || meta.job().isEmpty()) {
      throw invalid(ErrorCode.INVALID_METADATA, "job", "must be a non-empty string");
    }
    DType dtype = DType.fromWireName(meta.dtype());
    if (dtype == null || !dtype.isFloating()) {
      throw invalid(ErrorCode.INVALID_DTYPE, "dtype", "must be bf16, fp16 or fp32, got " + meta.dtype());
    }
    AttentionShape shape = new AttentionShape(meta.headsQ(), meta.headsKv(), meta.headDim(), dtype, meta.scale());
    String problem = shape.problem();
    if (problem != null) {
      String field = problem.substring(0, problem.indexOf(' '));
      throw invalid(ErrorCode.INVALID_SHAPE, field, problem);
    }
    return shape;
  }

  private void checkTasks(AttentionRequest meta) {
    List<TaskSpec> tasks = meta.tasks();
    if (tasks == null || tasks.isEmpty()) {
      throw invalid(ErrorCode.INVALID_METADATA, "tasks", "must list at least one task");
    }
    if (tasks.size() > limits.maxTasks()) {
      throw invalid(ErrorCode.LIMIT_EXCEEDED, "tasks", tasks.size() + " tasks exceed the limit of " + limits.maxTasks());
    }
    int[] segLens = meta.kvSegmentLens();
    if (segLens == null) {
      throw invalid(ErrorCode.INVALID_METADATA, "kv_segment_lens", "is required");
    }
    for (int i = 0; i < tasks.size(); i++) {
      TaskSpec t = tasks.get(i);
      String at = "tasks[" + i + "]";
      if (t == null) {
        throw invalid(ErrorCode.INVALID_METADATA, at, "is null");
      }
      if (t.qLen() < 0) {
        throw invalid(ErrorCode.INVALID_CU_SEQLENS, at + ".q_len", "must be >= 0, got " + t.qLen());
      }
      if (t.kvSegment() < 0 || t.kvSegment() >= segLens.length) {
        throw invalid(ErrorCode.INVALID_CU_SEQLENS, at + ".kv_segment",
            t.kvSegment() + " is not a segment index in [0, " + segLens.length + ")");
      }
      if (t.kvStart() < 0 || t.kvLen() < 0 || (long) t.kvStart() + t.kvLen() > segLens[t.kvSegment()]) {
        throw invalid(ErrorCode.INVALID_CU_SEQLENS, at + ".kv_len",
            "key range [" + t.kvStart() + ", " + ((long) t.kvStart() + t.kvLen()) + ") is outside segment "
                + t.kvSegment() + " of length " + segLens[t.kvSegment()]);
      }
    }
  }

  private static Tensor tensor(TensorSet in, String name, DType dtype, int... shape) {
    Tensor t = in.get(name);
    if (t == null) {
      throw invalid(ErrorCode.INVALID_PAYLOAD, name, "tensor is missing");
    }
    if (t.dtype() != dtype) {
      throw invalid(ErrorCode.INVALID_DTYPE, name, "is " + t.dtype() + ", expected " + dtype);
    }
    if (!Arrays.equals(t.shape(), shape)) {
      throw invalid(ErrorCode.INVALID_SHAPE, name,
          "has shape " + Arrays.toString(t.shape()) + ", expected " + Arrays.toString(shape));
    }
    return t;
  }

  private static ProtocolException invalid(ErrorCode code, String field, String message) {
    return new ProtocolException(code, field, message);
  }
}
