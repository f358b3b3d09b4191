package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.TensorSet;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Payloads that are not the tensor encoding: INVALID_PAYLOAD naming the column, connection usable, nothing leaked. */
class InvalidPayloadTest extends WireTestBase {
  private static final int[] SHAPE = {5, 4, 8};

  private byte[] frameWith(byte[] payload) {
    String meta = new String(Json.toBytes(Samples.meta(MessageType.FORWARD_RESPONSE)), StandardCharsets.UTF_8);
    return Frames.frame(MessageType.FORWARD_RESPONSE.code(), 12, meta, payload);
  }

  private DecodeFailure invalid(byte[] payload, String column, String detailPart) {
    DecodeFailure failure = decodeFailure(frameWith(payload), ErrorCode.INVALID_PAYLOAD);
    assertEquals(column, failure.error().field(), failure.toString());
    assertTrue(failure.error().detail().contains(detailPart), "'" + failure.error().detail() + "' lacks '" + detailPart + "'");
    assertEquals(12, failure.requestId());
    assertEquals(MessageType.FORWARD_RESPONSE, failure.type());
    assertFalse(failure.closesConnection());
    return failure;
  }

  private ArrowStreams stream() {
    return new ArrowStreams(allocator);
  }

  /** The payload our encoder writes for one fp32 tensor "o" of shape [2,3]: body = 8 offsets + 24 values. */
  private byte[] encodedSmallPayload() {
    TensorSet set = new TensorSet().put("o", patternTensor(allocator, DType.FP32, 1, 2, 3));
    return Frames.payload(encode(Message.of(MessageType.FORWARD_RESPONSE, 12, Samples.meta(MessageType.FORWARD_RESPONSE), set)));
  }

  @Test
  void independentlyWrittenPayloadIsAccepted() {
    try (Message m = decodeMessage(frameWith(stream().tensor("o", DType.BF16, 3, SHAPE).tensor("lse", DType.FP32, 4, 4, 5).toBytes()))) {
      assertPattern(m.tensors().get("o"), DType.BF16, 3, SHAPE);
      assertPattern(m.tensors().get("lse"), DType.FP32, 4, 4, 5);
    }
  }

  @Test
  void bytesThatAreNotArrow() {
    invalid("this is not an arrow stream, just text".getBytes(StandardCharsets.UTF_8), null, "not an Arrow IPC stream");
  }

  @Test
  void endOfStreamWithoutSchema() {
    invalid(EncodedPayload.END_OF_STREAM, null, "stream ends");
  }

  @Test
  void truncatedStream() {
    byte[] payload = encodedSmallPayload();
    invalid(Arrays.copyOf(payload, payload.length - 12), null, "runs past the end");
  }

  @Test
  void bytesAfterTheEndOfStream() {
    invalid(Frames.concat(encodedSmallPayload(), new byte[8]), null, "follow the end-of-stream marker");
  }

  @Test
  void streamWithoutEndMarker() {
    byte[] payload = encodedSmallPayload();
    invalid(Arrays.copyOf(payload, payload.length - 8), null, "end-of-stream marker");
  }

  @ParameterizedTest
  @ValueSource(strings = {"[5,4", "5,4,8", "[5,-4,8]", "[5,4.0,8]", "[a]", "[99999999999]", "[5,,8]"})
  void malformedShapeMetadata(String shape) {
    invalid(stream().column("q", TensorPayload.elementType(DType.FP16), ArrowStreams.metadata("fp16", shape), new int[160]).toBytes(),
        "q", TensorPayload.SHAPE_KEY);
  }

  @Test
  void missingShapeMetadata() {
    invalid(stream().column("k", TensorPayload.elementType(DType.FP16), ArrowStreams.metadata("fp16", null), new int[4]).toBytes(),
        "k", "lacks field metadata distca.shape");
  }

  @Test
  void shapeThatDoesNotMatchTheElementCount() {
    invalid(stream().column("q", TensorPayload.elementType(DType.BF16), ArrowStreams.metadata("bf16", "[5,4,9]"), new int[160]).toBytes(),
        "q", "shape [5,4,9] has 180 elements but the column holds 160");
  }

  @Test
  void missingDtypeMetadata() {
    invalid(stream().column("v", TensorPayload.elementType(DType.FP32), ArrowStreams.metadata(null, "[2]"), new int[2]).toBytes(),
        "v", "lacks field metadata distca.dtype");
  }

  @Test
  void unknownDtype() {
    invalid(stream().column("v", TensorPayload.elementType(DType.FP32), ArrowStreams.metadata("fp8", "[2]"), new int[2]).toBytes(),
        "v", "'fp8' is not one of");
  }

  @Test
  void itemTypeInconsistentWithDtype() {
    ArrowType half = new ArrowType.FloatingPoint(FloatingPointPrecision.HALF);
    invalid(stream().column("q", half, ArrowStreams.metadata("bf16", "[2]"), new int[2]).toBytes(), "q", "needs items of type Int(16, false)");
    ArrowType dbl = new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE);
    invalid(stream().column("lse", dbl, ArrowStreams.metadata("fp32", "[2]"), new int[2]).toBytes(), "lse", "got FloatingPoint(DOUBLE)");
  }

  @Test
  void columnThatIsNotAList() {
    invalid(stream().plainColumn("o", TensorPayload.elementType(DType.FP32), ArrowStreams.metadata("fp32", "[1]"), 0).toBytes(),
        "o", "must be a List");
  }

  @Test
  void moreThanOneRow() {
    invalid(stream().tensor("o", DType.FP32, 1, 2, 2).rows(2).toBytes(), null, "exactly 1 row");
  }

  @Test
  void moreThanOneRecordBatch() {
    invalid(stream().tensor("o", DType.FP32, 1, 2, 2).batches(2).toBytes(), null, "exactly one record batch");
  }

  @Test
  void duplicateColumnNames() {
    invalid(stream().tensor("o", DType.FP32, 1, 2).tensor("o", DType.FP32, 2, 2).toBytes(), "o", "duplicate");
  }

  @Test
  void valuesBufferBeyondTheBody() {
    byte[] payload = encodedSmallPayload();
    byte[] valuesBuffer = Frames.longsLE(8, 24);
    invalid(Frames.replaceOnce(payload, valuesBuffer, Frames.longsLE(8, 1 << 20)), "o", "values buffer [offset 8, length 1048576] lies outside");
    invalid(Frames.replaceOnce(payload, valuesBuffer, Frames.longsLE(-8, 24)), "o", "lies outside");
    invalid(Frames.replaceOnce(payload, valuesBuffer, Frames.longsLE(Long.MAX_VALUE, 24)), "o", "lies outside");
  }

  @Test
  void valuesBufferTooShortForTheShape() {
    invalid(Frames.replaceOnce(encodedSmallPayload(), Frames.longsLE(8, 24), Frames.longsLE(8, 20)), "o", "values buffer has 20 bytes");
  }

  @Test
  void listOffsetsOtherThanZeroToN() {
    byte[] payload = encodedSmallPayload();
    int listOffsetsAt = payload.length - EncodedPayload.END_OF_STREAM.length - 32; // body: 8 offset bytes + 24 value bytes
    assertEquals(0, ByteBuffer.wrap(payload, listOffsetsAt, 8).order(ByteOrder.LITTLE_ENDIAN).getInt());
    assertEquals(6, ByteBuffer.wrap(payload, listOffsetsAt + 4, 4).order(ByteOrder.LITTLE_ENDIAN).getInt());
    byte[] shifted = payload.clone();
    shifted[listOffsetsAt] = 1;
    invalid(shifted, "o", "list offsets must be [0, 6], got [1, 6]");
  }
}
