package io.distca.protocol.wire;

import io.distca.protocol.tensor.DType;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float2Vector;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.UInt2Vector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Payloads written by Arrow Java's own {@link ArrowStreamWriter} (an independent writer: it
 * emits validity bitmaps and its own padding), with any column types and metadata a test wants.
 */
final class ArrowStreams {
  private final BufferAllocator allocator;
  private final List<Field> fields = new ArrayList<>();
  private final List<int[]> values = new ArrayList<>();
  private final List<Boolean> lists = new ArrayList<>();
  private int rows = 1;
  private int batches = 1;

  ArrowStreams(BufferAllocator allocator) {
    this.allocator = allocator;
  }

  /** A well-formed tensor column holding pattern {@code seed}. */
  ArrowStreams tensor(String name, DType dtype, long seed, int... shape) {
    int n = Math.toIntExact(io.distca.protocol.tensor.Tensor.numelOf(shape));
    int[] bits = new int[n];
    for (int i = 0; i < n; i++) {
      bits[i] = WireTestBase.patternBits(dtype, seed, i);
    }
    return column(name, TensorPayload.elementType(dtype), metadata(dtype.wireName(), TensorPayload.shapeToString(shape)), bits);
  }

  /** A List column with the given item type, field metadata and raw element bits. */
  ArrowStreams column(String name, ArrowType itemType, Map<String, String> metadata, int[] bits) {
    Field item = new Field(TensorPayload.ITEM_FIELD, FieldType.nullable(itemType), null);
    fields.add(new Field(name, new FieldType(true, ArrowType.List.INSTANCE, null, metadata), List.of(item)));
    values.add(bits);
    lists.add(true);
    return this;
  }

  /** A column of {@code type} itself, not a List: one element per row. */
  ArrowStreams plainColumn(String name, ArrowType type, Map<String, String> metadata, int bits) {
    fields.add(new Field(name, new FieldType(true, type, null, metadata), null));
    values.add(new int[] {bits});
    lists.add(false);
    return this;
  }

  static Map<String, String> metadata(String dtype, String shape) {
    Map<String, String> m = new LinkedHashMap<>();
    if (dtype != null) {
      m.put(TensorPayload.DTYPE_KEY, dtype);
    }
    if (shape != null) {
      m.put(TensorPayload.SHAPE_KEY, shape);
    }
    return m;
  }

  /** Rows per batch; every row repeats the column's list. */
  ArrowStreams rows(int rows) {
    this.rows = rows;
    return this;
  }

  ArrowStreams batches(int batches) {
    this.batches = batches;
    return this;
  }

  byte[] toBytes() {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (VectorSchemaRoot root = VectorSchemaRoot.create(new Schema(fields), allocator);
        ArrowStreamWriter writer = new ArrowStreamWriter(root, null, out)) {
      writer.start();
      for (int b = 0; b < batches; b++) {
        fill(root);
        writer.writeBatch();
      }
      writer.end();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }

  private void fill(VectorSchemaRoot root) {
    root.allocateNew();
    for (int c = 0; c < fields.size(); c++) {
      if (!lists.get(c)) {
        for (int r = 0; r < rows; r++) {
          set(root.getVector(c), r, values.get(c)[0]);
        }
        root.getVector(c).setValueCount(rows);
        continue;
      }
      ListVector list = (ListVector) root.getVector(c);
      FieldVector items = (FieldVector) list.getDataVector();
      int[] bits = values.get(c);
      for (int r = 0; r < rows; r++) {
        int start = list.startNewValue(r);
        for (int i = 0; i < bits.length; i++) {
          set(items, start + i, bits[i]);
        }
        list.endValue(r, bits.length);
      }
      items.setValueCount(rows * bits.length);
      list.setValueCount(rows);
    }
    root.setRowCount(rows);
  }

  private static void set(FieldVector items, int index, int bits) {
    if (items instanceof Float2Vector v) {
      v.setSafe(index, (short) bits);
    } else if (items instanceof UInt2Vector v) {
      v.setSafe(index, (char) bits);
    } else if (items instanceof Float4Vector v) {
      v.setSafe(index, Float.intBitsToFloat(bits));
    } else if (items instanceof IntVector v) {
      v.setSafe(index, bits);
    } else if (items instanceof Float8Vector v) {
      v.setSafe(index, bits);
    } else {
      throw new IllegalArgumentException("no setter for " + items.getClass().getSimpleName());
    }
  }
}
