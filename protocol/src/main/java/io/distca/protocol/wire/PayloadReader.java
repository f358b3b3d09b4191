package io.distca.protocol.wire;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.arrow.flatbuf.Buffer;
import org.apache.arrow.flatbuf.Endianness;
import org.apache.arrow.flatbuf.FieldNode;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.MetadataVersion;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.ipc.message.MessageSerializer;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Parses a tensor payload (an Arrow IPC stream: schema message, one record batch, end-of-stream)
 * in place and validates everything a tensor view relies on before creating one: one row, List
 * columns whose item type matches {@code distca.dtype}, a shape whose product is the element count,
 * list offsets {@code [0, n]}, every buffer inside the body, unique names. Malformed flatbuffers are
 * caught as INVALID_PAYLOAD; a field tree is walked without recursion before Arrow converts it, so a
 * crafted cycle cannot overflow the stack.
 */
final class PayloadReader {
  private static final int CONTINUATION = 0xFFFFFFFF;
  private static final int PREFIX_BYTES = 8;

  private final ArrowBuf payload;
  private final long size;

  private PayloadReader(ArrowBuf payload) {
    this.payload = payload;
    this.size = payload.capacity();
  }

  /** See {@link TensorPayload#decode}: takes over {@code payload}, releases it on failure. */
  static TensorSet read(ArrowBuf payload) {
    try {
      return new PayloadReader(payload).readTensors();
    } catch (ProtocolException e) {
      payload.close();
      throw e;
    } catch (RuntimeException e) {
      payload.close();
      throw invalid(null, "Arrow payload does not parse: " + e, e);
    }
  }

  private record Envelope(Message message, long end) {}

  private record Column(String name, DType dtype, int[] shape, long valuesAt) {}

  private TensorSet readTensors() {
    Envelope schemaMessage = envelope(0, "schema message");
    Schema schema = schemaOf(schemaMessage.message());
    Envelope batchMessage = envelope(schemaMessage.end(), "record batch message");
    Message batchHeader = batchMessage.message();
    if (batchHeader.headerType() != MessageHeader.RecordBatch) {
      throw invalid(null, "second message of the stream must be a RecordBatch, got "
          + MessageHeader.name(batchHeader.headerType()) + " (dictionaries are not supported)");
    }
    long bodyStart = batchMessage.end();
    long bodyLength = batchHeader.bodyLength();
    if (!inRange(bodyStart, bodyLength, size)) {
      throw invalid(null, "record batch body of " + bodyLength + " bytes at byte " + bodyStart
          + " runs past the end of the " + size + "-byte payload");
    }
    checkEndOfStream(bodyStart + bodyLength);
    RecordBatch batch = (RecordBatch) batchHeader.header(new RecordBatch());
    List<Column> columns = columnsOf(schema, batch, bodyStart, bodyLength);

    AtomicBoolean released = new AtomicBoolean();
    TensorSet tensors = new TensorSet(() -> {
      // TensorSet may call this again on a second close(); the payload reference is released once.
      if (released.compareAndSet(false, true)) {
        payload.close();
      }
    });
    for (Column c : columns) {
      tensors.put(c.name(), Tensor.view(payload, c.valuesAt(), c.dtype(), c.shape()));
    }
    return tensors;
  }

  /** Reads the encapsulated message (continuation, int32 metadata size, flatbuffer) at {@code at}. */
  private Envelope envelope(long at, String what) {
    if (!inRange(at, PREFIX_BYTES, size)) {
      throw invalid(null, "payload of " + size + " bytes ends before the " + what + " at byte " + at);
    }
    int continuation = payload.getInt(at);
    int metadataSize = payload.getInt(at + 4);
    if (continuation != CONTINUATION) {
      throw invalid(null, String.format("not an Arrow IPC stream: expected continuation 0xFFFFFFFF before the %s at byte %d,"
          + " got 0x%08X", what, at, continuation));
    }
    if (metadataSize <= 0) {
      throw invalid(null, "stream ends (metadata size " + metadataSize + ") where the " + what + " was expected at byte " + at);
    }
    if (!inRange(at + PREFIX_BYTES, metadataSize, size)) {
      throw invalid(null, what + " metadata of " + metadataSize + " bytes at byte " + at + " runs past the end of the "
          + size + "-byte payload");
    }
    Message message = Message.getRootAsMessage(payload.nioBuffer(at + PREFIX_BYTES, metadataSize));
    short version = message.version();
    if (version < MetadataVersion.V4 || version > MetadataVersion.V5) {
      throw invalid(null, what + " has Arrow metadata version " + version + "; V4 and V5 are supported");
    }
    return new Envelope(message, at + PREFIX_BYTES + metadataSize);
  }

  private Schema schemaOf(Message message) {
    if (message.headerType() != MessageHeader.Schema) {
      throw invalid(null, "first message of the stream must be a Schema, got " + MessageHeader.name(message.headerType()));
    }
    if (message.bodyLength() != 0) {
      throw invalid(null, "schema message declares a body of " + message.bodyLength() + " bytes");
    }
    org.apache.arrow.flatbuf.Schema schema = (org.apache.arrow.flatbuf.Schema) message.header(new org.apache.arrow.flatbuf.Schema());
    if (schema.endianness() != Endianness.Little) {
      throw invalid(null, "schema is big-endian; tensors travel little-endian");
    }
    for (int i = 0; i < schema.fieldsLength(); i++) {
      org.apache.arrow.flatbuf.Field column = schema.fields(i);
      String name = column.name();
      if (column.childrenLength() != 1 || column.children(0).childrenLength() != 0) {
        throw invalid(name, "column must be a List of a primitive type (one child field without children)");
      }
      if (column.dictionary() != null || column.children(0).dictionary() != null) {
        throw invalid(name, "dictionary-encoded columns are not supported");
      }
    }
    return MessageSerializer.deserializeSchema(message);
  }

  private void checkEndOfStream(long at) {
    if (!inRange(at, PREFIX_BYTES, size) || payload.getInt(at) != CONTINUATION) {
      throw invalid(null, "expected the 8-byte end-of-stream marker (0xFFFFFFFF 0x00000000) at byte " + at
          + " of the " + size + "-byte payload");
    }
    if (payload.getInt(at + 4) != 0) {
      throw invalid(null, "payload must hold exactly one record batch, found another message at byte " + at);
    }
    if (at + PREFIX_BYTES != size) {
      throw invalid(null, (size - at - PREFIX_BYTES) + " bytes follow the end-of-stream marker");
    }
  }

  private List<Column> columnsOf(Schema schema, RecordBatch batch, long bodyStart, long bodyLength) {
    if (batch.length() != 1) {
      throw invalid(null, "record batch must have exactly 1 row (the tensors), has " + batch.length());
    }
    if (batch.compression() != null) {
      throw invalid(null, "compressed record batch bodies are not supported");
    }
    if (batch.variadicBufferCountsLength() != 0) {
      throw invalid(null, "variadic buffers are not supported");
    }
    List<Field> fields = schema.getFields();
    if (batch.nodesLength() != 2 * fields.size() || batch.buffersLength() != 4 * fields.size()) {
      throw invalid(null, "record batch has " + batch.nodesLength() + " field nodes and " + batch.buffersLength()
          + " buffers; " + fields.size() + " List columns need " + 2 * fields.size() + " and " + 4 * fields.size());
    }
    List<Column> columns = new ArrayList<>(fields.size());
    Set<String> names = new HashSet<>();
    for (int i = 0; i < fields.size(); i++) {
      Field field = fields.get(i);
      String name = field.getName();
      if (name == null || name.isEmpty()) {
        throw invalid(null, "column " + i + " has no name");
      }
      if (!names.add(name)) {
        throw invalid(name, "duplicate column name");
      }
      columns.add(column(field, batch, i, bodyStart, bodyLength));
    }
    return columns;
  }

  private Column column(Field field, RecordBatch batch, int index, long bodyStart, long bodyLength) {
    String name = field.getName();
    if (!(field.getType() instanceof ArrowType.List)) {
      throw invalid(name, "column must be List<T> (one row holding the flattened tensor), got " + field.getType());
    }
    String dtypeName = field.getMetadata().get(TensorPayload.DTYPE_KEY);
    if (dtypeName == null) {
      throw invalid(name, "column lacks field metadata " + TensorPayload.DTYPE_KEY + " (bf16|fp16|fp32|int32)");
    }
    DType dtype = DType.fromWireName(dtypeName);
    if (dtype == null) {
      throw invalid(name, TensorPayload.DTYPE_KEY + " '" + dtypeName + "' is not one of bf16, fp16, fp32, int32");
    }
    ArrowType itemType = field.getChildren().get(0).getType();
    if (!TensorPayload.elementType(dtype).equals(itemType)) {
      throw invalid(name, TensorPayload.DTYPE_KEY + " " + dtype + " needs items of type " + TensorPayload.elementType(dtype)
          + ", got " + itemType);
    }
    String shapeText = field.getMetadata().get(TensorPayload.SHAPE_KEY);
    if (shapeText == null) {
      throw invalid(name, "column lacks field metadata " + TensorPayload.SHAPE_KEY + " (a JSON array like [1024,32,128])");
    }
    int[] shape = TensorPayload.parseShape(shapeText, name);
    long numel;
    try {
      numel = Tensor.numelOf(shape);
    } catch (ArithmeticException e) {
      throw invalid(name, TensorPayload.SHAPE_KEY + " " + shapeText + " has more than 2^63 elements");
    }

    FieldNode list = batch.nodes(2 * index);
    FieldNode items = batch.nodes(2 * index + 1);
    if (list.length() != 1 || list.nullCount() != 0) {
      throw invalid(name, "list node must have length 1 and no nulls, has length " + list.length() + ", "
          + list.nullCount() + " nulls");
    }
    if (items.nullCount() != 0) {
      throw invalid(name, "tensor elements cannot be null, found " + items.nullCount() + " nulls");
    }
    if (items.length() != numel) {
      throw invalid(name, "shape " + shapeText + " has " + numel + " elements but the column holds " + items.length());
    }

    // With null_count 0 the validity bitmaps are never read, but a buffer outside the body is still malformed.
    buffer(batch, 4 * index, name, "list validity", bodyLength);
    Buffer listOffsets = buffer(batch, 4 * index + 1, name, "list offsets", bodyLength);
    buffer(batch, 4 * index + 2, name, "item validity", bodyLength);
    Buffer values = buffer(batch, 4 * index + 3, name, "values", bodyLength);
    if (listOffsets.length() < 8) {
      throw invalid(name, "list offsets buffer has " + listOffsets.length() + " bytes, needs 8 (two int32)");
    }
    int firstOffset = payload.getInt(bodyStart + listOffsets.offset());
    int lastOffset = payload.getInt(bodyStart + listOffsets.offset() + 4);
    if (firstOffset != 0 || lastOffset != items.length()) {
      throw invalid(name, "list offsets must be [0, " + items.length() + "], got [" + firstOffset + ", " + lastOffset + "]");
    }
    long needed = numel * dtype.byteSize();
    if (values.length() < needed) {
      throw invalid(name, "values buffer has " + values.length() + " bytes, " + shapeText + " " + dtype + " needs " + needed);
    }
    return new Column(name, dtype, shape, bodyStart + values.offset());
  }

  private static Buffer buffer(RecordBatch batch, int index, String column, String what, long bodyLength) {
    Buffer buffer = batch.buffers(index);
    if (!inRange(buffer.offset(), buffer.length(), bodyLength)) {
      throw invalid(column, what + " buffer [offset " + buffer.offset() + ", length " + buffer.length()
          + "] lies outside the " + bodyLength + "-byte record batch body");
    }
    return buffer;
  }

  private static boolean inRange(long offset, long length, long limit) {
    return offset >= 0 && length >= 0 && offset <= limit && length <= limit - offset;
  }

  private static ProtocolException invalid(String column, String message) {
    return new ProtocolException(ErrorCode.INVALID_PAYLOAD, column, message);
  }

  private static ProtocolException invalid(String column, String message, Throwable cause) {
    return new ProtocolException(ErrorCode.INVALID_PAYLOAD, column, message, 0, cause);
  }
}
