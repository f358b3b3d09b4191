package io.distca.protocol.wire;

import com.google.flatbuffers.FlatBufferBuilder;
import io.distca.protocol.tensor.Tensor;
import io.distca.protocol.tensor.TensorSet;
import io.netty.buffer.ByteBuf;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.arrow.vector.ipc.WriteChannel;
import org.apache.arrow.vector.ipc.message.ArrowBuffer;
import org.apache.arrow.vector.ipc.message.ArrowFieldNode;
import org.apache.arrow.vector.ipc.message.FBSerializables;
import org.apache.arrow.vector.ipc.message.IpcOption;
import org.apache.arrow.vector.ipc.message.MessageSerializer;

/**
 * The Arrow IPC stream of a {@link TensorSet}, laid out but not yet written: the schema message and
 * the record batch's metadata are serialized (by Arrow's own {@link MessageSerializer}), the body
 * is a plan of where each tensor's bytes go. {@link #writeTo} then emits the small parts as bytes
 * and each tensor as a reference to its memory.
 *
 * <p>Body layout per column, every buffer starting at a multiple of 8: list validity (omitted,
 * length 0), list offsets (int32 {@code [0, numel]}), item validity (omitted), item values (the
 * tensor, little-endian). Holds the tensors by reference: they must stay open until written.
 */
public final class EncodedPayload {
  static final byte[] END_OF_STREAM = {-1, -1, -1, -1, 0, 0, 0, 0};
  private static final int LIST_OFFSETS_BYTES = 8;

  private final byte[] streamPrefix;
  private final List<Tensor> tensors;
  private final long[] listOffsetsAt;
  private final long[] valuesAt;
  private final long bodyLength;

  private EncodedPayload(byte[] streamPrefix, List<Tensor> tensors, long[] listOffsetsAt, long[] valuesAt, long bodyLength) {
    this.streamPrefix = streamPrefix;
    this.tensors = tensors;
    this.listOffsetsAt = listOffsetsAt;
    this.valuesAt = valuesAt;
    this.bodyLength = bodyLength;
  }

  static EncodedPayload of(TensorSet set) {
    int columns = set.size();
    List<Tensor> tensors = new ArrayList<>(columns);
    List<ArrowFieldNode> nodes = new ArrayList<>(2 * columns);
    List<ArrowBuffer> buffers = new ArrayList<>(4 * columns);
    long[] listOffsetsAt = new long[columns];
    long[] valuesAt = new long[columns];
    long offset = 0;
    for (Map.Entry<String, Tensor> e : set.asMap().entrySet()) {
      String name = e.getKey();
      Tensor tensor = e.getValue();
      if (name == null || name.isEmpty()) {
        throw new IllegalArgumentException("tensor names must be non-empty");
      }
      if (tensor.numel() > Integer.MAX_VALUE) {
        throw new IllegalArgumentException("tensor '" + name + "' has " + tensor.numel()
            + " elements; a List column's int32 offsets allow at most 2^31-1");
      }
      int column = tensors.size();
      tensors.add(tensor);
      nodes.add(new ArrowFieldNode(1, 0));
      nodes.add(new ArrowFieldNode(tensor.numel(), 0));
      buffers.add(new ArrowBuffer(offset, 0));
      listOffsetsAt[column] = offset;
      buffers.add(new ArrowBuffer(offset, LIST_OFFSETS_BYTES));
      offset = align(offset + LIST_OFFSETS_BYTES);
      buffers.add(new ArrowBuffer(offset, 0));
      valuesAt[column] = offset;
      buffers.add(new ArrowBuffer(offset, tensor.byteSize()));
      offset = align(offset + tensor.byteSize());
    }
    byte[] prefix = serializeStreamPrefix(set, nodes, buffers, offset);
    return new EncodedPayload(prefix, tensors, listOffsetsAt, valuesAt, offset);
  }

  private static byte[] serializeStreamPrefix(TensorSet set, List<ArrowFieldNode> nodes, List<ArrowBuffer> buffers, long bodyLength) {
    FlatBufferBuilder builder = new FlatBufferBuilder();
    RecordBatch.startNodesVector(builder, nodes.size());
    int nodesOffset = FBSerializables.writeAllStructsToVector(builder, nodes);
    RecordBatch.startBuffersVector(builder, buffers.size());
    int buffersOffset = FBSerializables.writeAllStructsToVector(builder, buffers);
    RecordBatch.startRecordBatch(builder);
    RecordBatch.addLength(builder, 1);
    RecordBatch.addNodes(builder, nodesOffset);
    RecordBatch.addBuffers(builder, buffersOffset);
    int batch = RecordBatch.endRecordBatch(builder);
    ByteBuffer batchMessage = MessageSerializer.serializeMessage(builder, MessageHeader.RecordBatch, batch, bodyLength, IpcOption.DEFAULT);

    ByteArrayOutputStream bytes = new ByteArrayOutputStream(512);
    try (WriteChannel channel = new WriteChannel(Channels.newChannel(bytes))) {
      MessageSerializer.serialize(channel, TensorPayload.schemaOf(set), IpcOption.DEFAULT);
      MessageSerializer.writeMessageBuffer(channel, batchMessage.remaining(), batchMessage, IpcOption.DEFAULT);
    } catch (IOException e) {
      throw new UncheckedIOException("in-memory channel failed", e);
    }
    return bytes.toByteArray();
  }

  private static long align(long offset) {
    return (offset + 7) & ~7L;
  }

  /** Bytes of the whole stream: schema message, record batch message and body, end-of-stream marker. */
  public long length() {
    return streamPrefix.length + bodyLength + END_OF_STREAM.length;
  }

  /** Bytes of the record batch body. */
  public long bodyLength() {
    return bodyLength;
  }

  /** Emits the stream: everything but tensor values as bytes, tensor values as references to their memory. */
  void writeTo(FrameAssembler out) {
    out.scratch().writeBytes(streamPrefix);
    long position = 0;
    for (int column = 0; column < tensors.size(); column++) {
      Tensor tensor = tensors.get(column);
      out.zeros(listOffsetsAt[column] - position);
      ByteBuf scratch = out.scratch();
      scratch.writeIntLE(0);
      scratch.writeIntLE((int) tensor.numel());
      position = listOffsetsAt[column] + LIST_OFFSETS_BYTES;
      out.zeros(valuesAt[column] - position);
      out.reference(tensor);
      position = valuesAt[column] + tensor.byteSize();
    }
    out.zeros(bodyLength - position);
    out.scratch().writeBytes(END_OF_STREAM);
  }
}
