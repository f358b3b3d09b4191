package io.distca.protocol.wire;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Tensors as an Arrow IPC stream (docs/protocol.md, "Payload"): one record batch of one row, one
 * column per tensor of type {@code List<T>} whose single list element is the flattened row-major
 * tensor. The column field carries {@value #DTYPE_KEY} and {@value #SHAPE_KEY} metadata; bf16,
 * which Arrow lacks, travels as {@code uint16} marked bf16 by that metadata.
 *
 * <p>This is the mapping both directions share; {@link #encode} lays a payload out for sending and
 * {@link #decode} turns a received one into tensor views.
 */
public final class TensorPayload {
  public static final String DTYPE_KEY = "distca.dtype";
  public static final String SHAPE_KEY = "distca.shape";
  /** Name of the list's child field, as pyarrow names it. */
  public static final String ITEM_FIELD = "item";

  private TensorPayload() {}

  /** Arrow element type of the list column that carries a tensor of {@code dtype}. */
  public static ArrowType elementType(DType dtype) {
    switch (dtype) {
      case BF16:
        return new ArrowType.Int(16, false);
      case FP16:
        return new ArrowType.FloatingPoint(FloatingPointPrecision.HALF);
      case FP32:
        return new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE);
      case INT32:
        return new ArrowType.Int(32, true);
      default:
        throw new AssertionError(dtype);
    }
  }

  /** The column field of tensor {@code name}: {@code List<elementType>} with dtype and shape metadata. */
  public static Field columnField(String name, DType dtype, int[] shape) {
    Field item = new Field(ITEM_FIELD, FieldType.notNullable(elementType(dtype)), null);
    Map<String, String> metadata = Map.of(DTYPE_KEY, dtype.wireName(), SHAPE_KEY, shapeToString(shape));
    return new Field(name, new FieldType(false, ArrowType.List.INSTANCE, null, metadata), List.of(item));
  }

  public static Schema schemaOf(TensorSet tensors) {
    List<Field> fields = new ArrayList<>(tensors.size());
    for (Map.Entry<String, Tensor> e : tensors.asMap().entrySet()) {
      fields.add(columnField(e.getKey(), e.getValue().dtype(), e.getValue().shape()));
    }
    return new Schema(fields);
  }

  /** {@code [1024,32,128]}: a JSON array without spaces. */
  public static String shapeToString(int[] shape) {
    StringBuilder s = new StringBuilder("[");
    for (int i = 0; i < shape.length; i++) {
      if (i > 0) {
        s.append(',');
      }
      s.append(shape[i]);
    }
    return s.append(']').toString();
  }

  /**
   * Parses a {@value #SHAPE_KEY} value: a JSON array of non-negative 32-bit integers.
   *
   * @throws ProtocolException INVALID_PAYLOAD naming {@code column}
   */
  public static int[] parseShape(String text, String column) {
    String trimmed = text == null ? "" : text.strip();
    if (trimmed.length() < 2 || trimmed.charAt(0) != '[' || trimmed.charAt(trimmed.length() - 1) != ']') {
      throw badShape(column, text, "not a JSON array");
    }
    String body = trimmed.substring(1, trimmed.length() - 1).strip();
    if (body.isEmpty()) {
      return new int[0];
    }
    String[] parts = body.split(",", -1);
    int[] shape = new int[parts.length];
    for (int i = 0; i < parts.length; i++) {
      String part = parts[i].strip();
      if (!part.matches("[0-9]{1,10}")) {
        throw badShape(column, text, "dimension " + i + " '" + part + "' is not a non-negative integer");
      }
      long dim = Long.parseLong(part);
      if (dim > Integer.MAX_VALUE) {
        throw badShape(column, text, "dimension " + i + " exceeds 2^31-1");
      }
      shape[i] = (int) dim;
    }
    return shape;
  }

  private static ProtocolException badShape(String column, String text, String why) {
    return new ProtocolException(ErrorCode.INVALID_PAYLOAD, column,
        SHAPE_KEY + " '" + text + "' must be a JSON array of non-negative ints like [1024,32,128]: " + why);
  }

  /** Lays out the Arrow IPC stream of {@code tensors}: metadata serialized, tensor bytes only referenced. */
  public static EncodedPayload encode(TensorSet tensors) {
    return EncodedPayload.of(tensors);
  }

  /**
   * Parses and validates an Arrow IPC stream and returns tensor views over its record batch body.
   * Takes over one reference of {@code payload}: the returned set releases it on close, and it is
   * released before any exception leaves.
   *
   * @throws ProtocolException INVALID_PAYLOAD naming the column (or null for the stream as a whole)
   */
  public static TensorSet decode(ArrowBuf payload) {
    return PayloadReader.read(payload);
  }
}
