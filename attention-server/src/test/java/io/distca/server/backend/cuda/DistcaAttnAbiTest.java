package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.tensor.DType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import jcuda.driver.CUresult;
import org.junit.jupiter.api.Test;

/** The byte layouts of distca_attn.h (the offsets of its static_asserts and field comments). */
class DistcaAttnAbiTest {

  @Test
  void forwardParameterBlockMatchesTheHeaderOffsets() {
    byte[] bytes = new DistcaAttnAbi.ForwardParams(
        0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 11, 12, 32, 8, 99, 0.088f).encode();
    assertEquals(80, bytes.length);
    ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    assertEquals(0x1000, b.getLong(0));
    assertEquals(0x2000, b.getLong(8));
    assertEquals(0x3000, b.getLong(16));
    assertEquals(0x4000, b.getLong(24));
    assertEquals(0x5000, b.getLong(32));
    assertEquals(0x6000, b.getLong(40));
    assertEquals(0x7000, b.getLong(48), "fwd.work at 48");
    assertEquals(11, b.getInt(56), "fwd.total_q at 56");
    assertEquals(12, b.getInt(60));
    assertEquals(32, b.getInt(64));
    assertEquals(8, b.getInt(68));
    assertEquals(99, b.getInt(72));
    assertEquals(0.088f, b.getFloat(76), "fwd.scale at 76");
  }

  @Test
  void warpSpecializedForwardBlockIsTheForwardBlockThenFourTensorMaps() {
    DistcaAttnAbi.ForwardParams p = new DistcaAttnAbi.ForwardParams(
        0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 11, 12, 32, 8, 99, 0.088f);
    byte[][] maps = new byte[4][128];
    for (int m = 0; m < 4; m++) {
      java.util.Arrays.fill(maps[m], (byte) (m + 1));
    }
    byte[] bytes = p.encodeWs(0x1122334455667788L, new int[] {3, 40, 98}, maps[0], maps[1], maps[2], maps[3]);
    assertEquals(640, bytes.length, "sizeof(distca_fwd_ws_params_t)");
    assertArrayEquals(p.encode(), java.util.Arrays.copyOfRange(bytes, 0, 80), "distca_fwd_params_t at 0");
    assertEquals(0x1122334455667788L, java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong(80),
        "tile_counter at 80");
    ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    assertEquals(3, b.getInt(88), "band_end[0] at 88");
    assertEquals(40, b.getInt(92));
    assertEquals(98, b.getInt(96));
    assertArrayEquals(new byte[28], java.util.Arrays.copyOfRange(bytes, 100, 128), "zeros after the band ends, up to 128");
    assertArrayEquals(new byte[40], java.util.Arrays.copyOfRange(
        p.encodeWs(0, WorkBands.NONE, maps[0], maps[1], maps[2], maps[3]), 88, 128), "no bands: zeros");
    assertArrayEquals(maps[0], java.util.Arrays.copyOfRange(bytes, 128, 256), "tmap_q at 128");
    assertArrayEquals(maps[1], java.util.Arrays.copyOfRange(bytes, 256, 384), "tmap_k at 256");
    assertArrayEquals(maps[2], java.util.Arrays.copyOfRange(bytes, 384, 512), "tmap_v at 384");
    assertArrayEquals(maps[3], java.util.Arrays.copyOfRange(bytes, 512, 640), "tmap_o at 512");
    assertThrows(IllegalArgumentException.class,
        () -> p.encodeWs(0, WorkBands.NONE, maps[0], new byte[64], maps[2], maps[3]));
    // band ends increase inside (0, num_work = 99), at most DISTCA_WORK_BANDS of them
    for (int[] bad : new int[][] {{0}, {5, 5}, {7, 3}, {99}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
      assertThrows(IllegalArgumentException.class, () -> p.encodeWs(0, bad, maps[0], maps[1], maps[2], maps[3]),
          java.util.Arrays.toString(bad));
    }
  }

  @Test
  void warpSpecializedBackwardBlockIsTheBackwardBlockThenFiveTensorMaps() {
    DistcaAttnAbi.BackwardParams p = new DistcaAttnAbi.BackwardParams(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        21, 22, 16, 4, 77, 0.125f, 16);
    byte[][] maps = new byte[5][128];
    for (int m = 0; m < 5; m++) {
      java.util.Arrays.fill(maps[m], (byte) (m + 1));
    }
    byte[] bytes = p.encodeWs(0x0102030405060708L, 0x1112131415161718L, new int[] {1, 2, 3, 4, 5, 6, 7, 76},
        maps[0], maps[1], maps[2], maps[3], maps[4]);
    assertEquals(896, bytes.length, "sizeof(distca_bwd_ws_params_t)");
    assertArrayEquals(p.encode(), java.util.Arrays.copyOfRange(bytes, 0, 152), "distca_bwd_params_t at 0");
    ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    assertEquals(0x0102030405060708L, b.getLong(152), "tile_counter at 152");
    assertEquals(0x1112131415161718L, b.getLong(160), "dkv_accum at 160");
    for (int i = 0; i < 8; i++) {
      assertEquals(i == 7 ? 76 : i + 1, b.getInt(168 + 4 * i), "band_end[" + i + "] at " + (168 + 4 * i));
    }
    assertArrayEquals(new byte[56], java.util.Arrays.copyOfRange(bytes, 200, 256), "zeros up to 256");
    for (int m = 0; m < 5; m++) {
      assertArrayEquals(maps[m], java.util.Arrays.copyOfRange(bytes, 256 + 128 * m, 384 + 128 * m),
          "tensor map " + m + " (Q, K, V, dO, dQ workspace) at " + (256 + 128 * m));
    }
  }

  @Test
  void backwardParameterBlockMatchesTheHeaderOffsets() {
    long[] pointers = new long[15];
    for (int i = 0; i < pointers.length; i++) {
      pointers[i] = 0x10000L * (i + 1);
    }
    byte[] bytes = new DistcaAttnAbi.BackwardParams(pointers[0], pointers[1], pointers[2], pointers[3], pointers[4],
        pointers[5], pointers[6], pointers[7], pointers[8], pointers[9], pointers[10], pointers[11], pointers[12],
        pointers[13], pointers[14], 21, 22, 16, 4, 77, 0.125f, 0x0a0b0c0d0e0f1011L).encode();
    assertEquals(152, bytes.length);
    ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < pointers.length; i++) {
      assertEquals(pointers[i], b.getLong(8 * i), "pointer field " + i);
    }
    assertEquals(21, b.getInt(120), "bwd.total_q at 120");
    assertEquals(22, b.getInt(124));
    assertEquals(16, b.getInt(128));
    assertEquals(4, b.getInt(132));
    assertEquals(77, b.getInt(136));
    assertEquals(0.125f, b.getFloat(140), "bwd.scale at 140");
    assertEquals(0x0a0b0c0d0e0f1011L, b.getLong(144), "bwd.dq_claims at 144");
    assertEquals(0, new DistcaAttnAbi.BackwardParams(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 21, 22, 16, 4,
        77, 0.125f, 0).encode()[144], "no dq_claims: 0 at 144 (bwd_pre zeroes the dQ workspace)");
  }

  @Test
  void kernelNamesFollowTheHeader() {
    assertEquals("distca_attn_fwd_bf16_d128", DistcaAttnAbi.forwardKernel(DType.BF16, 128));
    assertEquals("distca_attn_bwd_bf16_d64", DistcaAttnAbi.backwardKernel(DType.BF16, 64));
    assertEquals("distca_attn_bwd_post_fp16_d128", DistcaAttnAbi.backwardPostKernel(DType.FP16, 128));
    assertEquals("distca_attn_bwd_post_ws_bf16_d256", DistcaAttnAbi.backwardPostWsKernel(DType.BF16, 256));
    assertEquals("distca_attn_info_d128", DistcaAttnAbi.infoGlobal(128));
    assertEquals("distca_attn_fwd_ws_fp16_d128", DistcaAttnAbi.forwardWsKernel(DType.FP16, 128));
    assertEquals("distca_attn_bwd_ws_bf16_d128", DistcaAttnAbi.backwardWsKernel(DType.BF16, 128));
    assertThrows(IllegalArgumentException.class, () -> DistcaAttnAbi.forwardKernel(DType.FP32, 64));
  }

  @Test
  void geometryIsDecodedFromTheModuleInfoAndVersionChecked() {
    ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
    int[] fields = {DistcaAttnAbi.ABI_VERSION, 128, 128, 64, 256, 81920, 64, 128, 256, 98304, 256, 8, 384, 164928, 384, 150000};
    for (int i = 0; i < fields.length; i++) {
      b.putInt(4 * i, fields[i]);
    }
    KernelGeometry g = KernelGeometry.decode(b.array(), 128);
    assertEquals(new KernelGeometry(128, 128, 64, 256, 81920, 64, 128, 256, 98304, 256, 8, 384, 164928, 384, 150000), g);
    assertTrue(g.hasWarpSpecializedForward(), "fwd_ws_threads at 48");
    assertTrue(g.hasWarpSpecializedBackward(), "bwd_ws_threads at 56");
    assertEquals(1, g.elementwiseBlocks(5, 3), "ceil(5 rows * 3 heads * 128 / (256 * 8))");
    assertEquals(2, g.elementwiseBlocks(6, 3), "ceil(6 rows * 3 heads * 128 / (256 * 8))");
    assertEquals(0, g.elementwiseBlocks(0, 3), "no rows, no blocks");

    IllegalStateException wrongHeadDim = assertThrows(IllegalStateException.class, () -> KernelGeometry.decode(b.array(), 64));
    assertTrue(wrongHeadDim.getMessage().contains("head_dim 128"), wrongHeadDim.getMessage());
    int other = DistcaAttnAbi.ABI_VERSION + 1;
    b.putInt(0, other);
    IllegalStateException wrongAbi = assertThrows(IllegalStateException.class, () -> KernelGeometry.decode(b.array(), 128));
    assertTrue(wrongAbi.getMessage().contains("ABI version " + other), wrongAbi.getMessage());
    b.putInt(0, DistcaAttnAbi.ABI_VERSION);
    for (int offset = 48; offset < 64; offset += 4) {
      b.putInt(offset, 0);
    }
    KernelGeometry without = KernelGeometry.decode(b.array(), 128);
    assertTrue(!without.hasWarpSpecializedForward() && !without.hasWarpSpecializedBackward(), "an image without them reports 0");
    b.putInt(16, 0);
    assertThrows(IllegalStateException.class, () -> KernelGeometry.decode(b.array(), 128), "zero threads");
  }

  @Test
  void driverErrorNamesMapBackToCodes() {
    assertEquals(CUresult.CUDA_ERROR_OUT_OF_MEMORY, Driver.codeOf("CUDA_ERROR_OUT_OF_MEMORY"));
    assertEquals(CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, Driver.codeOf("CUDA_ERROR_ILLEGAL_ADDRESS and more"));
    assertEquals(-1, Driver.codeOf("something else"));
    assertEquals(-1, Driver.codeOf(null));
    CudaCallException e = new CudaCallException("cuMemAlloc(8 bytes)", 2, "CUDA_ERROR_OUT_OF_MEMORY", "growing slot 1", null);
    assertEquals("cuMemAlloc(8 bytes) failed with CUDA_ERROR_OUT_OF_MEMORY (2) while growing slot 1", e.getMessage());
  }

  /**
   * The warp-specialized forward's K/V boxes are its key blocks: 128 rows, and at head_dim 256 the
   * kernel's DISTCA_FWD_WS_D256_BN (native/src/fwd_ws_sm90.cuh), which the Python host's rule for
   * images of this ABI version (80 rows since version 4) gives too.
   */
  @Test
  void theWarpSpecializedForwardsKeyBoxesAreItsKeyBlocks() throws IOException {
    assertEquals(128, DistcaAttnAbi.forwardWsKeyBoxRows(64));
    assertEquals(128, DistcaAttnAbi.forwardWsKeyBoxRows(128));
    Path root = repositoryRoot();
    assertEquals(firstInt(root.resolve("native/src/fwd_ws_sm90.cuh"), "#define DISTCA_FWD_WS_D256_BN (\\d+)"),
        DistcaAttnAbi.forwardWsKeyBoxRows(256));
    assertEquals(DistcaAttnAbi.forwardWsKeyBoxRows(256),
        firstInt(root.resolve("native/bench/distca_host.py"), "if hd == 256:\\s+return (\\d+) if abi >= \\d+ "));
  }

  /**
   * The ABI version this host packs is the header's, and the Python host's (native/bench), so that a
   * layout change in distca_attn.h cannot land with one host left behind: the kernels' image is built
   * from the header, and KernelGeometry refuses an image of another version only on a GPU.
   */
  @Test
  void abiVersionIsTheHeadersAndThePythonHosts() throws IOException {
    Path root = repositoryRoot();
    assertEquals(DistcaAttnAbi.ABI_VERSION,
        firstInt(root.resolve("native/include/distca_attn.h"), "#define DISTCA_ATTN_ABI_VERSION (\\d+)"));
    assertEquals(DistcaAttnAbi.ABI_VERSION, firstInt(root.resolve("native/bench/distca_host.py"), "(?m)^ABI_VERSION = (\\d+)"));
  }

  /**
   * Every kernel this host looks up is one that native/src/distca_attn.cu defines (its macros paste
   * the names as NAME##_##DT_NAME##_d##D or distca_attn_KIND_##DT_NAME##_d##D) and the header lists, so
   * that a renamed or missing entry point fails here rather than at cuModuleGetFunction on a GPU.
   */
  @Test
  void kernelsTheHostLaunchesAreDefinedAndDocumented() throws IOException {
    Path root = repositoryRoot();
    String source = Files.readString(root.resolve("native/src/distca_attn.cu"));
    String header = Files.readString(root.resolve("native/include/distca_attn.h"));
    for (String name : new String[] {
        DistcaAttnAbi.forwardKernel(DType.BF16, 128), DistcaAttnAbi.forwardWsKernel(DType.BF16, 128),
        DistcaAttnAbi.backwardKernel(DType.BF16, 128), DistcaAttnAbi.backwardWsKernel(DType.BF16, 128),
        DistcaAttnAbi.backwardWsKvKernel(DType.BF16, 128), DistcaAttnAbi.backwardWsChunkedKernel(DType.BF16, 128),
        DistcaAttnAbi.backwardPostKernel(DType.BF16, 128), DistcaAttnAbi.backwardPostWsKernel(DType.BF16, 128)}) {
      String kind = name.substring(0, name.length() - "_bf16_d128".length());
      assertTrue(source.contains(kind + "_##DT_NAME##_d##D(") || source.contains(kind + ", "),
          kind + " is defined in distca_attn.cu");
      assertTrue(header.contains(kind + "_<DT>_d<HD>"), kind + " is listed in distca_attn.h");
    }
    // section 13's kernel exists at head_dim 64 only
    String q128 = DistcaAttnAbi.backwardWsQ128Kernel(DType.BF16, 64);
    String kind = q128.substring(0, q128.length() - "_bf16_d64".length());
    assertTrue(source.contains(kind + ", "), kind + " is defined in distca_attn.cu");
    assertTrue(source.contains("DISTCA_DEFINE_BWD_WS_Q128(bf16, __nv_bfloat16, 64)"), kind + " at head_dim 64");
    assertTrue(header.contains(kind + "_<DT>_d<HD>"), kind + " is listed in distca_attn.h");
  }

  /** Section 13's bounds on a batch's slices, the same in the header and both hosts. */
  @Test
  void q128BoundsAreTheHeadersInBothHosts() throws IOException {
    Path root = repositoryRoot();
    Path header = root.resolve("native/include/distca_attn.h");
    Path policy = root.resolve("native/bench/schedule_policy.py");
    assertEquals(DistcaAttnAbi.BWD_Q128_MIN_ROWS_FULL, firstInt(header, "#define DISTCA_BWD_Q128_MIN_ROWS_FULL (\\d+)"));
    assertEquals(DistcaAttnAbi.BWD_Q128_MIN_ROWS_CAUSAL, firstInt(header, "#define DISTCA_BWD_Q128_MIN_ROWS_CAUSAL (\\d+)"));
    assertEquals(DistcaAttnAbi.BWD_Q128_MIN_ROWS_FULL, firstInt(policy, "(?m)^BWD_Q128_MIN_ROWS_FULL = (\\d+)"));
    assertEquals(DistcaAttnAbi.BWD_Q128_MIN_ROWS_CAUSAL, firstInt(policy, "(?m)^BWD_Q128_MIN_ROWS_CAUSAL = (\\d+)"));
    assertEquals(DistcaAttnAbi.BWD_Q128_SHORT_WORK_DIVISOR,
        firstInt(header, "#define DISTCA_BWD_Q128_SHORT_WORK_DIVISOR (\\d+)"));
    assertEquals(DistcaAttnAbi.BWD_Q128_SHORT_WORK_DIVISOR, firstInt(policy, "(?m)^BWD_Q128_SHORT_WORK_DIVISOR = (\\d+)"));
  }

  /** Section 11's band ends: as many as the header's array holds, where the header puts them, in both hosts. */
  @Test
  void bandEndsAreTheHeadersInBothHosts() throws IOException {
    Path root = repositoryRoot();
    Path header = root.resolve("native/include/distca_attn.h");
    assertEquals(DistcaAttnAbi.WORK_BANDS, firstInt(header, "#define DISTCA_WORK_BANDS (\\d+)"));
    assertEquals(DistcaAttnAbi.WORK_BANDS, firstInt(root.resolve("native/bench/schedule_policy.py"), "(?m)^WORK_BANDS = (\\d+)"));
    assertEquals(DistcaAttnAbi.FORWARD_WS_BAND_END_OFFSET,
        firstInt(header, "offsetof\\(distca_fwd_ws_params_t, band_end\\) == (\\d+)"));
    assertEquals(DistcaAttnAbi.BACKWARD_WS_BAND_END_OFFSET,
        firstInt(header, "offsetof\\(distca_bwd_ws_params_t, band_end\\) == (\\d+)"));
  }

  /** The repository root: the first directory at or above the working directory with native/include/distca_attn.h. */
  static Path repositoryRoot() {
    Path root = Path.of("").toAbsolutePath();
    while (root != null && !Files.exists(root.resolve("native/include/distca_attn.h"))) {
      root = root.getParent();
    }
    assertTrue(root != null, "native/include/distca_attn.h above " + Path.of("").toAbsolutePath());
    return root;
  }

  private static int firstInt(Path file, String regex) throws IOException {
    Matcher m = Pattern.compile(regex).matcher(Files.readString(file));
    assertTrue(m.find(), regex + " in " + file);
    return Integer.parseInt(m.group(1));
  }
}
