package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.TensorSet;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.BaseFixedWidthVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.arrow.vector.types.pojo.Field;
import org.junit.jupiter.api.Test;

/** Our payloads read by Arrow Java's standard stream reader, an implementation that shares none of our parsing. */
class ArrowInteropTest extends WireTestBase {

  @Test
  void arrowStreamReaderReadsEveryDtypeWithShapeMetadataAndValues() throws IOException {
    TensorSet set = new TensorSet()
        .put("q", patternTensor(allocator, DType.BF16, 1, 3, 2, 4))
        .put("k", patternTensor(allocator, DType.FP16, 2, 5, 1, 4))
        .put("lse", patternTensor(allocator, DType.FP32, 3, 2, 3))
        .put("idx", patternTensor(allocator, DType.INT32, 4, 7))
        .put("empty", patternTensor(allocator, DType.FP32, 5, 0, 8));
    byte[] payload = Frames.payload(encode(Message.of(MessageType.FORWARD_RESPONSE, 1, Samples.meta(MessageType.FORWARD_RESPONSE), set)));

    try (ArrowStreamReader reader = new ArrowStreamReader(new ByteArrayInputStream(payload), allocator)) {
      VectorSchemaRoot root = reader.getVectorSchemaRoot();
      List<Field> fields = root.getSchema().getFields();
      assertEquals(List.of("q", "k", "lse", "idx", "empty"), fields.stream().map(Field::getName).toList());
      assertTrue(reader.loadNextBatch());
      assertEquals(1, root.getRowCount());
      assertColumn(root, "q", DType.BF16, 1, "[3,2,4]");
      assertColumn(root, "k", DType.FP16, 2, "[5,1,4]");
      assertColumn(root, "lse", DType.FP32, 3, "[2,3]");
      assertColumn(root, "idx", DType.INT32, 4, "[7]");
      assertColumn(root, "empty", DType.FP32, 5, "[0,8]");
      assertFalse(reader.loadNextBatch(), "exactly one record batch");
      assertEquals(payload.length, reader.bytesRead(), "the reader consumed the whole payload, end-of-stream included");
    }
  }

  private static void assertColumn(VectorSchemaRoot root, String name, DType dtype, long seed, String shape) {
    ListVector list = assertInstanceOf(ListVector.class, root.getVector(name));
    Map<String, String> metadata = list.getField().getMetadata();
    assertEquals(dtype.wireName(), metadata.get(TensorPayload.DTYPE_KEY));
    assertEquals(shape, metadata.get(TensorPayload.SHAPE_KEY));
    FieldVector items = (FieldVector) list.getDataVector();
    assertEquals(TensorPayload.elementType(dtype), items.getField().getType());
    int n = Math.toIntExact(io.distca.protocol.tensor.Tensor.numelOf(TensorPayload.parseShape(shape, name)));
    assertEquals(0, list.getElementStartIndex(0));
    assertEquals(n, list.getElementEndIndex(0));
    assertEquals(n, items.getValueCount());
    BaseFixedWidthVector values = (BaseFixedWidthVector) items;
    for (int i = 0; i < n; i++) {
      assertFalse(values.isNull(i));
      long at = (long) i * dtype.byteSize();
      int bits = dtype.byteSize() == 2 ? values.getDataBuffer().getShort(at) & 0xffff : values.getDataBuffer().getInt(at);
      assertEquals(patternBits(dtype, seed, i), bits, name + "[" + i + "]");
    }
  }
}
