package io.distca.server.backend.cuda;

import io.distca.protocol.tensor.DType;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * TMA tensor maps for the warp-specialized forward (native/include/distca_attn.h, section 7),
 * encoded by the driver's cuTensorMapEncodeTiled through a small JNI library packaged beside the
 * kernels ({@code io/distca/native/libdistca_tma-linux-x86_64.so}, built from src/main/c), since
 * JCuda 12.6 does not bind that function. Where the library or the driver function is missing,
 * {@link #unavailableReason()} says why and the backend launches the forward without TMA.
 */
final class TensorMaps {
  static final String LIBRARY_RESOURCE = "io/distca/native/libdistca_tma-linux-x86_64.so";
  static final int TENSOR_MAP_BYTES = 128;

  private static final int CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = 6;
  private static final int CU_TENSOR_MAP_DATA_TYPE_FLOAT32 = 7;
  private static final int CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9;
  /** The 128-byte swizzle's span: a box is 128 bytes of columns wide. */
  private static final int SWIZZLE_BYTES = 128;

  private static final String UNAVAILABLE = load();

  private TensorMaps() {}

  /** Null when tensor maps can be encoded here; otherwise why not. */
  static String unavailableReason() {
    return UNAVAILABLE;
  }

  /**
   * The 128-byte tensor map of a {@code [rows][heads][headDim]} bf16, fp16 or fp32 tensor at device
   * address {@code address}: boxes of 128 bytes of columns x 1 head x {@code boxRows} rows (a
   * kernel's tile height), 128-byte swizzle.
   */
  static byte[] encode(DType dtype, long address, long rows, int heads, int headDim, int boxRows) {
    int dataType = switch (dtype) {
      case BF16 -> CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
      case FP16 -> CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
      case FP32 -> CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
      default -> throw new IllegalArgumentException("tensor maps of bf16, fp16 or fp32, not " + dtype);
    };
    int elementBytes = dtype.byteSize();
    int boxCols = SWIZZLE_BYTES / elementBytes;
    if (rows < 1 || heads < 1 || headDim % boxCols != 0 || boxRows < 1 || boxRows > 256) {
      throw new IllegalArgumentException("tensor map of " + rows + " rows x " + heads + " heads x " + headDim + " "
          + dtype + " in boxes of " + boxRows + " rows: needs rows, heads >= 1, head_dim a multiple of " + boxCols
          + ", boxes of 1-256 rows");
    }
    if (UNAVAILABLE != null) {
      throw new IllegalStateException("TMA tensor maps unavailable: " + UNAVAILABLE);
    }
    byte[] map = new byte[TENSOR_MAP_BYTES];
    Driver.check("cuTensorMapEncodeTiled(" + rows + " x " + heads + " x " + headDim + " " + dtype + ")",
        "encoding the tensor map of the tensor at 0x" + Long.toHexString(address),
        () -> encode0(map, address, dataType, elementBytes, rows, heads, headDim, boxCols, boxRows));
    return map;
  }

  private static String load() {
    String os = System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT);
    String arch = System.getProperty("os.arch", "");
    if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
      return "the JNI library is built for linux-x86_64 only (this is " + os + "/" + arch + ")";
    }
    try (InputStream in = TensorMaps.class.getClassLoader().getResourceAsStream(LIBRARY_RESOURCE)) {
      if (in == null) {
        return "resource " + LIBRARY_RESOURCE + " is not on the class path (built without a C compiler?)";
      }
      Path file = Files.createTempFile("distca_tma", ".so");
      file.toFile().deleteOnExit();
      Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
      System.load(file.toAbsolutePath().toString());
    } catch (IOException | UnsatisfiedLinkError | SecurityException e) {
      return "loading " + LIBRARY_RESOURCE + ": " + e;
    }
    return available0() ? null
        : "libcuda.so.1 (the NVIDIA driver) could not be opened or has no cuTensorMapEncodeTiled (CUDA 12.0 or later)";
  }

  private static native boolean available0();

  private static native int encode0(byte[] out, long address, int dataType, int elementBytes, long rows, int heads,
      int headDim, int boxCols, int boxRows);
}
