package io.distca.cli;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Reads and writes NumPy {@code .npy} files (format versions 1 to 3) holding little-endian float32,
 * float16 or int32 arrays in C order: the dumps PyTorch users make with {@code np.save}.
 */
final class Npy {
  private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
  private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
  private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
  private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

  private Npy() {}

  static Tensor read(Path path, BufferAllocator allocator) throws IOException {
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      ByteBuffer pre = ByteBuffer.allocate(10).order(ByteOrder.LITTLE_ENDIAN);
      readFully(ch, pre, path);
      pre.flip();
      byte[] magic = new byte[6];
      pre.get(magic);
      if (!java.util.Arrays.equals(magic, MAGIC)) {
        throw new IOException(path + " is not a .npy file (bad magic)");
      }
      int major = pre.get() & 0xff;
      pre.get(); // minor
      long headerLen;
      if (major == 1) {
        headerLen = pre.getShort(8) & 0xffff;
      } else if (major == 2 || major == 3) {
        ByteBuffer extra = ByteBuffer.allocate(2);
        readFully(ch, extra, path);
        headerLen = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN)
            .put(pre.array(), 8, 2).put(extra.array()).getInt(0) & 0xffffffffL;
      } else {
        throw new IOException(path + ": unsupported .npy version " + major);
      }
      ByteBuffer header = ByteBuffer.allocate((int) headerLen);
      readFully(ch, header, path);
      String dict = new String(header.array(), major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
      DType dtype = dtypeOf(field(DESCR, dict, path), path);
      if (field(FORTRAN, dict, path).equals("True")) {
        throw new IOException(path + ": Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
      }
      int[] shape = shapeOf(field(SHAPE, dict, path), path);
      Tensor t = Tensor.allocate(allocator, dtype, shape);
      try {
        ByteBuffer body = t.buffer().nioBuffer(t.byteOffset(), (int) t.byteSize());
        readFully(ch, body, path);
        return t;
      } catch (IOException | RuntimeException e) {
        t.close();
        throw e;
      }
    }
  }

  static void write(Path path, Tensor t) throws IOException {
    String descr;
    switch (t.dtype()) {
      case FP32:
        descr = "<f4";
        break;
      case FP16:
        descr = "<f2";
        break;
      case INT32:
        descr = "<i4";
        break;
      default:
        throw new IOException("cannot write " + t.dtype() + " to .npy (NumPy has no bfloat16): convert first");
    }
    StringBuilder shape = new StringBuilder();
    for (int d : t.shape()) {
      shape.append(d).append(", ");
    }
    if (t.rank() > 1) {
      shape.setLength(shape.length() - 1);
    }
    String dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + shape.toString().trim() + "), }";
    int unpadded = 10 + dict.length() + 1;
    int pad = (64 - unpadded % 64) % 64;
    String header = dict + " ".repeat(pad) + "\n";
    ByteBuffer pre = ByteBuffer.allocate(10).order(ByteOrder.LITTLE_ENDIAN);
    pre.put(MAGIC).put((byte) 1).put((byte) 0).putShort((short) header.length()).flip();
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
        StandardOpenOption.TRUNCATE_EXISTING)) {
      writeFully(ch, pre);
      writeFully(ch, ByteBuffer.wrap(header.getBytes(StandardCharsets.ISO_8859_1)));
      if (t.byteSize() > 0) {
        writeFully(ch, t.buffer().nioBuffer(t.byteOffset(), (int) t.byteSize()));
      }
    }
  }

  private static DType dtypeOf(String descr, Path path) throws IOException {
    switch (descr) {
      case "<f4":
        return DType.FP32;
      case "<f2":
        return DType.FP16;
      case "<i4":
        return DType.INT32;
      default:
        throw new IOException(path + ": dtype '" + descr + "' is not supported (float32, float16 or int32, little-endian)");
    }
  }

  private static int[] shapeOf(String s, Path path) throws IOException {
    List<Integer> dims = new ArrayList<>();
    for (String part : s.split(",")) {
      String p = part.trim();
      if (!p.isEmpty()) {
        try {
          dims.add(Integer.parseInt(p.endsWith("L") ? p.substring(0, p.length() - 1) : p));
        } catch (NumberFormatException e) {
          throw new IOException(path + ": bad shape (" + s + ")");
        }
      }
    }
    return dims.stream().mapToInt(Integer::intValue).toArray();
  }

  private static String field(Pattern p, String dict, Path path) throws IOException {
    Matcher m = p.matcher(dict);
    if (!m.find()) {
      throw new IOException(path + ": header lacks " + p.pattern().substring(1, p.pattern().indexOf("'", 1)));
    }
    return m.group(1);
  }

  private static void readFully(FileChannel ch, ByteBuffer b, Path path) throws IOException {
    while (b.hasRemaining()) {
      if (ch.read(b) < 0) {
        throw new IOException(path + " is truncated");
      }
    }
  }

  private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
    while (b.hasRemaining()) {
      ch.write(b);
    }
  }
}
