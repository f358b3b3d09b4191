package io.distca.server.backend.cuda;

import io.distca.protocol.tensor.DType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Locale;

/**
 * The host side of native/include/distca_attn.h (ABI version 2): kernel symbol names, descriptor
 * sizes and the byte layout of the by-value parameter blocks. Offsets here are the header's; a
 * change there must change this class and its test together.
 */
final class DistcaAttnAbi {
  private DistcaAttnAbi() {}

  static final int ABI_VERSION = 6;

  /** distca_slice_t: q_start, q_len, k_start, kv_len, causal, diagonal, segment, reserved. */
  static final int SLICE_INTS = 8;
  /** distca_segment_t: k_start, len, slice_begin, slice_count. */
  static final int SEGMENT_INTS = 4;
  /** distca_work_t: item, block. */
  static final int WORK_INTS = 2;

  static final int FORWARD_PARAMS_BYTES = 80;
  /**
   * distca_fwd_ws_params_t: distca_fwd_params_t, the tile counter at 80, the work list's band ends at 88
   * (section 11), zeros to 128, then the Q, K, V and O tensor maps.
   */
  static final int FORWARD_WS_PARAMS_BYTES = 640;
  static final int FORWARD_WS_TENSOR_MAPS_OFFSET = 128;
  /** Offset of the persistent forward's tile counter address in distca_fwd_ws_params_t. */
  static final int FORWARD_WS_TILE_COUNTER_OFFSET = 80;
  /** Offset of the persistent forward's band ends (section 11, int32[{@link #WORK_BANDS}]). */
  static final int FORWARD_WS_BAND_END_OFFSET = 88;
  /** The most band ends of a persistent kernel's parameter block (section 11, DISTCA_WORK_BANDS). */
  static final int WORK_BANDS = 8;
  static final int BACKWARD_PARAMS_BYTES = 152;
  /** Offset of the persistent backward's tile counter address in distca_bwd_ws_params_t. */
  static final int BACKWARD_WS_TILE_COUNTER_OFFSET = 152;
  /** Offset of the dK/dV workspace address (section 9) in distca_bwd_ws_params_t. */
  static final int BACKWARD_WS_DKV_ACCUM_OFFSET = 160;
  /** Offset of the persistent backward's band ends (section 11) in distca_bwd_ws_params_t. */
  static final int BACKWARD_WS_BAND_END_OFFSET = 168;
  /**
   * distca_bwd_ws_params_t: distca_bwd_params_t, the tile counter at 152, the dK/dV workspace at 160,
   * the band ends at 168, zeros to 256, then the Q, K, V, dO and dQ-workspace tensor maps.
   */
  static final int BACKWARD_WS_PARAMS_BYTES = 896;
  /**
   * The backward work item's block word (section 9): the key block in bits 0-19, the first query
   * head of the group that the item walks from bit 20, how many from bit 26 (0: the whole group).
   */
  static final int WORK_BLOCK_MASK = 0xFFFFF;
  static final int WORK_HEAD_SHIFT = 20;
  static final int WORK_HEADS_SHIFT = 26;
  /** Groups of at most this many query heads per K/V head can be split (six bits of the word). */
  static final int MAX_SPLIT_GROUP = 64;
  /** The smallest GQA group for the chunked warp-specialized backward (section 10, DISTCA_BWD_CHUNK_MIN_GROUP). */
  static final int BWD_CHUNK_MIN_GROUP = 5;
  /**
   * Section 13: the query rows under which a slice counts as short for the head_dim 64 backward's
   * 128-row steps, without and with the causal mask (DISTCA_BWD_Q128_MIN_ROWS_FULL / _CAUSAL).
   */
  static final int BWD_Q128_MIN_ROWS_FULL = 1536;
  static final int BWD_Q128_MIN_ROWS_CAUSAL = 3072;
  /** Section 13: the slices under those bounds may hold at most 1 / this of a batch's work (DISTCA_BWD_Q128_SHORT_WORK_DIVISOR). */
  static final int BWD_Q128_SHORT_WORK_DIVISOR = 4;
  static final int BACKWARD_WS_TENSOR_MAPS_OFFSET = 256;
  /**
   * Box heights of the warp-specialized kernels' tensor maps: their query (forward 128, backward 64)
   * and key tiles (128; the forward's 80 at head_dim 256: {@link #forwardWsKeyBoxRows}).
   */
  static final int FORWARD_WS_BOX_ROWS = 128;
  static final int BACKWARD_WS_QUERY_BOX_ROWS = 64;
  static final int BACKWARD_WS_KEY_BOX_ROWS = 128;
  static final int INFO_BYTES = 64;

  /** Rows of the warp-specialized forward's K and V boxes: its key blocks, 80 rows at head_dim 256 (ABI version 4; 64 in 3). */
  static int forwardWsKeyBoxRows(int headDim) {
    return headDim == 256 ? 80 : FORWARD_WS_BOX_ROWS;
  }

  /** The grid size limit of grid.x. */
  static final long MAX_GRID_X = Integer.MAX_VALUE;

  static String forwardKernel(DType dtype, int headDim) {
    return "distca_attn_fwd_" + dtypeName(dtype) + "_d" + headDim;
  }

  /** The warp-specialized forward (distca_attn.h section 7); launch only where the geometry has it. */
  static String forwardWsKernel(DType dtype, int headDim) {
    return "distca_attn_fwd_ws_" + dtypeName(dtype) + "_d" + headDim;
  }

  static String backwardKernel(DType dtype, int headDim) {
    return "distca_attn_bwd_" + dtypeName(dtype) + "_d" + headDim;
  }

  /** The warp-specialized backward step 2 (distca_attn.h section 7); only where the geometry has it. */
  static String backwardWsKernel(DType dtype, int headDim) {
    return "distca_attn_bwd_ws_" + dtypeName(dtype) + "_d" + headDim;
  }

  /** The warp-specialized backward with group splits (section 9; head_dim 64 and 128 of the sm_90a image only). */
  static String backwardWsKvKernel(DType dtype, int headDim) {
    return "distca_attn_bwd_ws_kv_" + dtypeName(dtype) + "_d" + headDim;
  }

  /** The warp-specialized backward walking the GQA group in chunks (section 10; head_dim 128 of the sm_90a image only). */
  static String backwardWsChunkedKernel(DType dtype, int headDim) {
    return "distca_attn_bwd_ws_chunked_" + dtypeName(dtype) + "_d" + headDim;
  }

  /** The warp-specialized backward in steps of 128 query rows (section 13; head_dim 64 of the sm_90a image only). */
  static String backwardWsQ128Kernel(DType dtype, int headDim) {
    return "distca_attn_bwd_ws_q128_" + dtypeName(dtype) + "_d" + headDim;
  }

  static String backwardPostKernel(DType dtype, int headDim) {
    return "distca_attn_bwd_post_" + dtypeName(dtype) + "_d" + headDim;
  }

  /**
   * Step 3 after the warp-specialized backwards (bwd_ws, bwd_ws_kv, bwd_ws_chunked): their dQ
   * workspace holds each group of 8 columns permuted (section 12, ABI version 6).
   */
  static String backwardPostWsKernel(DType dtype, int headDim) {
    return "distca_attn_bwd_post_ws_" + dtypeName(dtype) + "_d" + headDim;
  }

  static String infoGlobal(int headDim) {
    return "distca_attn_info_d" + headDim;
  }

  static boolean supportsDtype(DType dtype) {
    return dtype == DType.BF16 || dtype == DType.FP16;
  }

  private static String dtypeName(DType dtype) {
    if (!supportsDtype(dtype)) {
      throw new IllegalArgumentException("the CUDA kernels take bf16 or fp16, not " + dtype);
    }
    return dtype.wireName().toLowerCase(Locale.ROOT);
  }

  /** Device addresses and sizes of one forward launch (distca_fwd_params_t). */
  record ForwardParams(
      long q, long k, long v, long o, long lse, long slices, long work,
      int totalQ, int totalK, int headsQ, int headsKv, int numWork, float scale) {

    byte[] encode() {
      ByteBuffer b = ByteBuffer.allocate(FORWARD_PARAMS_BYTES).order(ByteOrder.LITTLE_ENDIAN);
      b.putLong(0, q).putLong(8, k).putLong(16, v).putLong(24, o).putLong(32, lse)
          .putLong(40, slices).putLong(48, work)
          .putInt(56, totalQ).putInt(60, totalK).putInt(64, headsQ).putInt(68, headsKv).putInt(72, numWork)
          .putFloat(76, scale);
      return b.array();
    }

    /**
     * distca_fwd_ws_params_t: these parameters, the device address of the tile counter (an int32
     * that is 0 at launch; 0: the kernel splits the tiles statically), the work list's band ends
     * (section 11; empty: none), then the tensor maps of Q, K, V and O (128 bytes each; O's is
     * encoded as Q's, at O's address).
     */
    byte[] encodeWs(long tileCounter, int[] bandEnds, byte[] tensorMapQ, byte[] tensorMapK, byte[] tensorMapV,
        byte[] tensorMapO) {
      byte[] out = withTensorMaps(encode(), FORWARD_WS_PARAMS_BYTES, FORWARD_WS_TENSOR_MAPS_OFFSET,
          tensorMapQ, tensorMapK, tensorMapV, tensorMapO);
      ByteBuffer b = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putLong(FORWARD_WS_TILE_COUNTER_OFFSET, tileCounter);
      putBandEnds(b, FORWARD_WS_BAND_END_OFFSET, bandEnds, numWork);
      return out;
    }
  }

  /**
   * Device addresses and sizes of the three backward launches (distca_bwd_params_t). {@code dqClaims}:
   * the int32 [heads_q, total_q] workspace of distca_attn.h section 8 (the warp-specialized
   * backward zeroes the dQ workspace where it first uses it), or 0 (bwd_pre zeroes it: required with
   * the other backward kernel).
   */
  record BackwardParams(
      long q, long k, long v, long o, long dout, long lse, long dsum, long dqAccum,
      long dq, long dk, long dv, long slices, long segments, long segmentSlices, long work,
      int totalQ, int totalK, int headsQ, int headsKv, int numWork, float scale, long dqClaims) {

    byte[] encode() {
      ByteBuffer b = ByteBuffer.allocate(BACKWARD_PARAMS_BYTES).order(ByteOrder.LITTLE_ENDIAN);
      b.putLong(0, q).putLong(8, k).putLong(16, v).putLong(24, o).putLong(32, dout).putLong(40, lse)
          .putLong(48, dsum).putLong(56, dqAccum).putLong(64, dq).putLong(72, dk).putLong(80, dv)
          .putLong(88, slices).putLong(96, segments).putLong(104, segmentSlices).putLong(112, work)
          .putInt(120, totalQ).putInt(124, totalK).putInt(128, headsQ).putInt(132, headsKv).putInt(136, numWork)
          .putFloat(140, scale).putLong(144, dqClaims);
      return b.array();
    }

    /**
     * distca_bwd_ws_params_t: these parameters, the tile counter's device address (as in the
     * forward's), the dK/dV workspace's (section 9; 0: the kernel writes dK and dV), the work list's
     * band ends (section 11; empty: none), then the tensor maps of Q, K, V, dO and the dQ workspace.
     */
    byte[] encodeWs(long tileCounter, long dkvAccum, int[] bandEnds, byte[] tensorMapQ, byte[] tensorMapK,
        byte[] tensorMapV, byte[] tensorMapDout, byte[] tensorMapDqAccum) {
      byte[] out = withTensorMaps(encode(), BACKWARD_WS_PARAMS_BYTES, BACKWARD_WS_TENSOR_MAPS_OFFSET,
          tensorMapQ, tensorMapK, tensorMapV, tensorMapDout, tensorMapDqAccum);
      ByteBuffer b = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putLong(BACKWARD_WS_TILE_COUNTER_OFFSET, tileCounter)
          .putLong(BACKWARD_WS_DKV_ACCUM_OFFSET, dkvAccum);
      putBandEnds(b, BACKWARD_WS_BAND_END_OFFSET, bandEnds, numWork);
      return out;
    }

    /**
     * bwd_post's block for converting half {@code half} of the dK/dV workspace (section 9: 0 dK,
     * times the softmax scale; 1 dV) at {@code sums} into {@code out}.
     */
    static byte[] convertKv(long sums, long out, int totalK, int headsKv, float scale) {
      return new BackwardParams(0, 0, 0, 0, 0, 0, 0, sums, out, 0, 0, 0, 0, 0, 0, totalK, totalK, headsKv, headsKv, 0,
          scale, 0).encode();
    }
  }

  /**
   * Section 11's band ends at {@code offset}: at most {@link #WORK_BANDS}, increasing, each inside
   * (0, numWork); the rest of the array stays zero.
   */
  private static void putBandEnds(ByteBuffer b, int offset, int[] ends, int numWork) {
    if (ends.length > WORK_BANDS) {
      throw new IllegalArgumentException("at most " + WORK_BANDS + " band ends, got " + ends.length);
    }
    int previous = 0;
    for (int i = 0; i < ends.length; i++) {
      if (ends[i] <= previous || ends[i] >= numWork) {
        throw new IllegalArgumentException("band ends must increase inside (0, " + numWork + "): "
            + java.util.Arrays.toString(ends));
      }
      previous = ends[i];
      b.putInt(offset + 4 * i, ends[i]);
    }
  }

  /** A parameter block of {@code size} bytes: {@code params}, zeros, then the tensor maps from {@code offset}. */
  private static byte[] withTensorMaps(byte[] params, int size, int offset, byte[]... maps) {
    byte[] out = new byte[size];
    System.arraycopy(params, 0, out, 0, params.length);
    for (int i = 0; i < maps.length; i++) {
      if (maps[i].length != TensorMaps.TENSOR_MAP_BYTES) {
        throw new IllegalArgumentException("a CUtensorMap is " + TensorMaps.TENSOR_MAP_BYTES + " bytes, got " + maps[i].length);
      }
      System.arraycopy(maps[i], 0, out, offset + i * TensorMaps.TENSOR_MAP_BYTES, TensorMaps.TENSOR_MAP_BYTES);
    }
    return out;
  }
}
