package io.distca.server.backend.cuda;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Tile sizes and launch shape of one head dimension, as the loaded module reports them in its
 * {@code distca_attn_info_d<HD>} global (distca_attn_info_t). They can differ per GPU architecture,
 * so they are read after the module is loaded on the device in use, never hard-coded.
 */
record KernelGeometry(
    int headDim,
    int forwardBlockM, int forwardBlockN, int forwardThreads, int forwardSharedBytes,
    int backwardBlockM, int backwardBlockN, int backwardThreads, int backwardSharedBytes,
    int elementwiseThreads, int elementwiseVector,
    int forwardWsThreads, int forwardWsSharedBytes,
    int backwardWsThreads, int backwardWsSharedBytes) {

  KernelGeometry {
    requirePositive("head_dim", headDim);
    requirePositive("fwd_block_m", forwardBlockM);
    requirePositive("fwd_block_n", forwardBlockN);
    requirePositive("fwd_threads", forwardThreads);
    requireNonNegative("fwd_smem_bytes", forwardSharedBytes);
    requirePositive("bwd_block_m", backwardBlockM);
    requirePositive("bwd_block_n", backwardBlockN);
    requirePositive("bwd_threads", backwardThreads);
    requireNonNegative("bwd_smem_bytes", backwardSharedBytes);
    requirePositive("elementwise_threads", elementwiseThreads);
    requirePositive("elementwise_vec", elementwiseVector);
    requireNonNegative("fwd_ws_threads", forwardWsThreads);
    requireNonNegative("fwd_ws_smem_bytes", forwardWsSharedBytes);
    requireNonNegative("bwd_ws_threads", backwardWsThreads);
    requireNonNegative("bwd_ws_smem_bytes", backwardWsSharedBytes);
  }

  /** Whether this image has the warp-specialized forward for this head dimension (fwd_ws_threads != 0). */
  boolean hasWarpSpecializedForward() {
    return forwardWsThreads > 0;
  }

  /** Whether this image has the warp-specialized backward for this head dimension (bwd_ws_threads != 0). */
  boolean hasWarpSpecializedBackward() {
    return backwardWsThreads > 0;
  }

  /** Decodes the 64-byte distca_attn_info_t read from the module. */
  static KernelGeometry decode(byte[] info, int expectedHeadDim) {
    if (info.length != DistcaAttnAbi.INFO_BYTES) {
      throw new IllegalArgumentException("distca_attn_info_t is " + DistcaAttnAbi.INFO_BYTES + " bytes, got " + info.length);
    }
    ByteBuffer b = ByteBuffer.wrap(info).order(ByteOrder.LITTLE_ENDIAN);
    int abi = b.getInt(0);
    if (abi != DistcaAttnAbi.ABI_VERSION) {
      throw new IllegalStateException("kernel module has ABI version " + abi + ", this backend speaks "
          + DistcaAttnAbi.ABI_VERSION + " (rebuild the attention server and its kernels together)");
    }
    int headDim = b.getInt(4);
    if (headDim != expectedHeadDim) {
      throw new IllegalStateException(DistcaAttnAbi.infoGlobal(expectedHeadDim) + " reports head_dim " + headDim);
    }
    return new KernelGeometry(headDim,
        b.getInt(8), b.getInt(12), b.getInt(16), b.getInt(20),
        b.getInt(24), b.getInt(28), b.getInt(32), b.getInt(36),
        b.getInt(40), b.getInt(44),
        b.getInt(48), b.getInt(52),
        b.getInt(56), b.getInt(60));
  }

  /** Blocks of the bwd_pre and bwd_post kernels for {@code totalQ} rows. */
  long elementwiseBlocks(long totalQ, int headsQ) {
    long elements = totalQ * headsQ * headDim;
    long perBlock = (long) elementwiseThreads * elementwiseVector;
    return (elements + perBlock - 1) / perBlock;
  }

  private static void requirePositive(String field, int value) {
    if (value <= 0) {
      throw new IllegalStateException("kernel module reports " + field + " = " + value + ", expected > 0");
    }
  }

  private static void requireNonNegative(String field, int value) {
    if (value < 0) {
      throw new IllegalStateException("kernel module reports " + field + " = " + value + ", expected >= 0");
    }
  }
}
