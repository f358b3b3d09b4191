package io.distca.server.backend.cuda;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.QuerySlice;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Everything the host computes for one fused launch, before any CUDA call: where each slice's query
 * rows and each segment's key rows sit in the fused buffers, the descriptor arrays and work list of
 * distca_attn.h, and the byte layout of all buffers in a pipeline slot's arena.
 *
 * <p>The arena layout is [inputs | outputs | workspace]. The pinned staging block uses the same
 * offsets for inputs and outputs, so one host-to-device copy moves every input (descriptors
 * included) and one device-to-host copy moves every output; the workspace lives on the device only.
 *
 * <p>The work list is ordered most expensive tile first (the header's cost estimate), so the long
 * tiles of long documents start first and short ones fill the tail: mixed-length batches keep every
 * SM busy without a persistent kernel.
 */
final class FusedBatchPlan {
  enum Pass {
    FORWARD,
    BACKWARD
  }

  final Pass pass;
  final AttentionShape shape;
  final int totalQ;
  final int totalK;
  /** First fused query row of each slice (its LSE column too). */
  final int[] sliceQStart;
  /** First fused key row of each segment. */
  final int[] segmentKStart;
  /** distca_slice_t[slices], {@link DistcaAttnAbi#SLICE_INTS} ints each. */
  final int[] sliceDescriptors;
  /** distca_segment_t[segments] (backward only, else empty). */
  final int[] segmentDescriptors;
  /** Backward: slice indices grouped by segment (else empty). */
  final int[] segmentSlices;
  /** distca_work_t[numWork], most expensive first (by head range first: {@link #headOrderedSplits}). */
  final int[] work;
  final int numWork;
  /**
   * Estimated cost of each work item, same order as {@link #work}: non-increasing, but for a plan
   * with {@link #headOrderedSplits} (non-increasing within each head range).
   */
  final long[] workCost;
  /**
   * Backward: whether the work list has group splits (distca_attn.h section 9), so that the
   * warp-specialized kernel adds dK and dV into the workspace at {@link Layout#dkvAccum} and bwd_post
   * converts them; only plans made for the warp-specialized backward have them.
   */
  final boolean groupSplits;
  /**
   * Backward: whether the group splits are {@link #l2OrderPieces}' (native/NOTES.md v79), the work
   * list ordered by the pieces' head ranges first (every key tile's first piece, longest first, then
   * every second piece, ...), which section 11's bands must not cut.
   */
  final boolean headOrderedSplits;
  /**
   * Backward: whether {@link #q128Steps} takes the batch, so that the warp-specialized backward runs in
   * steps of 128 query rows where the image has that kernel (distca_attn.h section 13).
   */
  final boolean q128Steps;
  final Layout layout;

  /** Byte offsets inside a slot's arena; -1 where a pass has no such buffer. */
  record Layout(
      long q, long k, long v, long o, long dout, long lse,
      long slices, long segments, long segmentSlices, long work,
      long dq, long dk, long dv, long dsum, long dqAccum, long dqClaims, long tileCounter, long dkvAccum,
      long inputBytes, long outputStart, long outputBytes, long pinnedBytes, long deviceBytes) {}

  /**
   * {@code splitSms}: backward only, the SMs that the warp-specialized backward's persistent grid
   * spans, for its group splits (section 9); 0 where that kernel does not run (no splits then).
   * {@code leanDram}: the GPU has less DRAM bandwidth per SM than {@link #SPLIT_LEAN_DRAM_BYTES_PER_SM}
   * ({@link #groupSplits(long[], int, int, int, int, boolean, boolean, boolean)}).
   */
  private FusedBatchPlan(Pass pass, AttentionBatch batch, KernelGeometry geometry, int splitSms, boolean leanDram) {
    this.pass = pass;
    this.shape = batch.shape();
    List<QuerySlice> slices = batch.slices();
    List<KvSegment> segments = batch.segments();
    requireMatchingDtypes(batch, pass);

    sliceQStart = new int[slices.size()];
    long rowsQ = 0;
    for (int i = 0; i < slices.size(); i++) {
      sliceQStart[i] = (int) rowsQ;
      rowsQ += slices.get(i).qLen();
      requireInt32(rowsQ, "fused query rows");
    }
    totalQ = (int) rowsQ;
    segmentKStart = new int[segments.size()];
    long rowsK = 0;
    for (int g = 0; g < segments.size(); g++) {
      segmentKStart[g] = (int) rowsK;
      rowsK += segments.get(g).length();
      requireInt32(rowsK, "fused key rows");
    }
    totalK = (int) rowsK;

    sliceDescriptors = new int[slices.size() * DistcaAttnAbi.SLICE_INTS];
    for (int i = 0; i < slices.size(); i++) {
      QuerySlice s = slices.get(i);
      int at = i * DistcaAttnAbi.SLICE_INTS;
      sliceDescriptors[at] = sliceQStart[i];
      sliceDescriptors[at + 1] = s.qLen();
      sliceDescriptors[at + 2] = segmentKStart[s.segment()] + s.kvStart();
      sliceDescriptors[at + 3] = s.kvLen();
      sliceDescriptors[at + 4] = s.causal() ? 1 : 0;
      sliceDescriptors[at + 5] = s.diagonal();
      sliceDescriptors[at + 6] = s.segment();
      sliceDescriptors[at + 7] = 0;
    }

    if (pass == Pass.BACKWARD) {
      segmentDescriptors = new int[segments.size() * DistcaAttnAbi.SEGMENT_INTS];
      segmentSlices = new int[slices.size()];
      int[] counts = new int[segments.size()];
      for (QuerySlice s : slices) {
        counts[s.segment()]++;
      }
      int[] next = new int[segments.size()];
      int begin = 0;
      for (int g = 0; g < segments.size(); g++) {
        int at = g * DistcaAttnAbi.SEGMENT_INTS;
        segmentDescriptors[at] = segmentKStart[g];
        segmentDescriptors[at + 1] = segments.get(g).length();
        segmentDescriptors[at + 2] = begin;
        segmentDescriptors[at + 3] = counts[g];
        next[g] = begin;
        begin += counts[g];
      }
      for (int i = 0; i < slices.size(); i++) {
        segmentSlices[next[slices.get(i).segment()]++] = i;
      }
    } else {
      segmentDescriptors = new int[0];
      segmentSlices = new int[0];
    }

    WorkList list = pass == Pass.FORWARD ? forwardWork(slices, geometry) : backwardWork(batch, geometry);
    WorkList split = null;
    boolean headOrdered = false;
    if (pass == Pass.BACKWARD && splitSms > 0) {
      int group = shape.headsQ() / shape.headsKv();
      boolean causal = allCausal(batch);
      int pieces = l2OrderPieces(list.costs, group, geometry.backwardBlockM(), causal, shape.headDim(), shape.headsKv());
      if (pieces > 1) {
        split = piecesOf(list, group, uniformSplits(list.costs.length, pieces), true);
        headOrdered = true;
      } else {
        split = withGroupSplits(list, shape.headsKv(), group, splitSms, geometry.backwardBlockM(), leanDram,
            causal, shape.headDim() >= SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM);
      }
    }
    groupSplits = split != null;
    headOrderedSplits = headOrdered;
    q128Steps = pass == Pass.BACKWARD
        && q128Steps(shape.headDim(), queryRows(slices), kvRows(slices), causalFlags(slices), groupSplits);
    if (split != null) {
      list = split;
    }
    work = list.items;
    workCost = list.costs;
    numWork = list.costs.length;
    int heads = pass == Pass.FORWARD ? shape.headsQ() : shape.headsKv();
    if ((long) numWork * heads > DistcaAttnAbi.MAX_GRID_X) {
      throw new IllegalArgumentException("batch needs " + numWork + " tiles x " + heads
          + " heads CTAs, over the grid limit of " + DistcaAttnAbi.MAX_GRID_X + "; split the batch");
    }
    if (pass == Pass.BACKWARD && geometry.elementwiseBlocks(totalQ, shape.headsQ()) > DistcaAttnAbi.MAX_GRID_X) {
      throw new IllegalArgumentException("batch of " + totalQ + " query rows is too large for one backward launch; split it");
    }
    layout = layout(pass);
  }

  /**
   * Whether a backward runs in steps of 128 query rows (distca_attn.h section 13, native/NOTES.md v81,
   * v86, v87): head_dim 64, no group splits, and the slices with fewer query rows than {@link
   * DistcaAttnAbi#BWD_Q128_MIN_ROWS_CAUSAL} (causal) or {@link DistcaAttnAbi#BWD_Q128_MIN_ROWS_FULL} (not)
   * hold at most 1 / {@link DistcaAttnAbi#BWD_Q128_SHORT_WORK_DIVISOR} of the batch's work, a slice's
   * q_len x kv_len, half of it if causal (there must be work). schedule_policy.py's bwd_q128 decides
   * the same.
   */
  static boolean q128Steps(int headDim, int[] qLens, int[] kvLens, boolean[] causal, boolean groupSplits) {
    if (headDim != 64 || groupSplits) {
      return false;
    }
    long total = 0;
    long shortWork = 0;
    for (int i = 0; i < qLens.length; i++) {
      long work = (long) Math.max(0, qLens[i]) * Math.max(0, kvLens[i]) * (causal[i] ? 1 : 2);  // (twice the work)
      total += work;
      if (qLens[i] < (causal[i] ? DistcaAttnAbi.BWD_Q128_MIN_ROWS_CAUSAL : DistcaAttnAbi.BWD_Q128_MIN_ROWS_FULL)) {
        shortWork += work;
      }
    }
    return total > 0 && shortWork * DistcaAttnAbi.BWD_Q128_SHORT_WORK_DIVISOR <= total;
  }

  private static int[] queryRows(List<QuerySlice> slices) {
    return slices.stream().mapToInt(QuerySlice::qLen).toArray();
  }

  private static int[] kvRows(List<QuerySlice> slices) {
    return slices.stream().mapToInt(QuerySlice::kvLen).toArray();
  }

  private static boolean[] causalFlags(List<QuerySlice> slices) {
    boolean[] causal = new boolean[slices.size()];
    for (int i = 0; i < causal.length; i++) {
      causal[i] = slices.get(i).causal();
    }
    return causal;
  }

  static FusedBatchPlan forward(AttentionBatch batch, KernelGeometry geometry) {
    return new FusedBatchPlan(Pass.FORWARD, batch, geometry, 0, false);
  }

  /** A backward plan without group splits (for any backward kernel). */
  static FusedBatchPlan backward(AttentionBatch batch, KernelGeometry geometry) {
    return backward(batch, geometry, 0, false);
  }

  /**
   * A backward plan for the warp-specialized kernel on a persistent grid of {@code splitSms} CTAs,
   * with group splits where {@link #groupSplits(long[], int, int, int, int, boolean, boolean, boolean)} finds
   * that they pay (0: none, for the other kernel), on a GPU that {@link #leanDram(double)} or not.
   */
  static FusedBatchPlan backward(AttentionBatch batch, KernelGeometry geometry, int splitSms, boolean leanDram) {
    return new FusedBatchPlan(Pass.BACKWARD, batch, geometry, splitSms, leanDram);
  }

  long queryRowBytes() {
    return (long) shape.headsQ() * shape.headDim() * shape.dtype().byteSize();
  }

  long keyRowBytes() {
    return (long) shape.headsKv() * shape.headDim() * shape.dtype().byteSize();
  }

  private Layout layout(Pass pass) {
    long qBytes = totalQ * queryRowBytes();
    long kBytes = totalK * keyRowBytes();
    long lseBytes = 4L * shape.headsQ() * totalQ;
    ArenaLayout a = new ArenaLayout();
    long q = a.add(qBytes);
    long k = a.add(kBytes);
    long v = a.add(kBytes);
    if (pass == Pass.FORWARD) {
      long slices = a.add(4L * sliceDescriptors.length);
      long workAt = a.add(4L * work.length);
      long inputBytes = a.totalBytes();
      long o = a.add(qBytes);
      long lse = a.add(lseBytes);
      long outputBytes = a.totalBytes() - inputBytes;
      long pinnedBytes = a.totalBytes();
      long tileCounter = a.add(4); // the persistent kernels' tile counter (device only)
      return new Layout(q, k, v, o, -1, lse, slices, -1, -1, workAt, -1, -1, -1, -1, -1, -1, tileCounter, -1,
          inputBytes, inputBytes, outputBytes, pinnedBytes, a.totalBytes());
    }
    // no O: the backward takes D = rowsum(dO * O) from the request (delta), uploaded into dsum
    long dout = a.add(qBytes);
    long lse = a.add(lseBytes);
    long dsum = a.add(lseBytes);
    long slices = a.add(4L * sliceDescriptors.length);
    long segments = a.add(4L * segmentDescriptors.length);
    long segmentSlicesAt = a.add(4L * segmentSlices.length);
    long workAt = a.add(4L * work.length);
    long inputBytes = a.totalBytes();
    long dq = a.add(qBytes);
    long dk = a.add(kBytes);
    long dv = a.add(kBytes);
    long outputBytes = a.totalBytes() - inputBytes;
    long pinnedBytes = a.totalBytes();
    long dqAccum = a.add(4L * totalQ * shape.headsQ() * shape.headDim());
    long dqClaims = a.add(lseBytes); // distca_attn.h section 8: int32 [heads_q, total_q]
    long tileCounter = a.add(4);
    // section 9: fp32 [2][total_k, heads_kv, HD], the key tiles' dK and dV sums
    long dkvAccum = groupSplits ? a.add(2L * 4 * totalK * shape.headsKv() * shape.headDim()) : -1;
    return new Layout(q, k, v, -1, dout, lse, slices, segments, segmentSlicesAt, workAt, dq, dk, dv, dsum, dqAccum,
        dqClaims, tileCounter, dkvAccum,
        inputBytes, inputBytes, outputBytes, pinnedBytes, a.totalBytes());
  }

  private record WorkList(int[] items, long[] costs) {}

  /** One {slice, query block} per query tile; cost = key blocks the tile visits. */
  private static WorkList forwardWork(List<QuerySlice> slices, KernelGeometry g) {
    int bm = g.forwardBlockM();
    int count = 0;
    for (QuerySlice s : slices) {
      count = Math.addExact(count, ceilDiv(s.qLen(), bm));
    }
    int[] items = new int[count * 2];
    long[] costs = new long[count];
    int n = 0;
    for (int i = 0; i < slices.size(); i++) {
      QuerySlice s = slices.get(i);
      int blocks = ceilDiv(s.qLen(), bm);
      for (int b = 0; b < blocks; b++) {
        items[2 * n] = i;
        items[2 * n + 1] = b;
        costs[n] = forwardTileCost(s, b, g);
        n++;
      }
    }
    return sortByCostDescending(items, costs);
  }

  static long forwardTileCost(QuerySlice s, int block, KernelGeometry g) {
    long keysVisited;
    if (s.causal()) {
      long lastRow = Math.min(s.qLen(), (long) (block + 1) * g.forwardBlockM()) - 1;
      keysVisited = Math.max(0, Math.min(s.kvLen(), lastRow + s.diagonal() + 1));
    } else {
      keysVisited = s.kvLen();
    }
    return ceilDiv(keysVisited, g.forwardBlockN());
  }

  /** One {segment, key block} per key tile of every segment; cost = query rows that see the tile. */
  private static WorkList backwardWork(AttentionBatch batch, KernelGeometry g) {
    List<KvSegment> segments = batch.segments();
    int bn = g.backwardBlockN();
    int count = 0;
    for (KvSegment seg : segments) {
      count = Math.addExact(count, ceilDiv(seg.length(), bn));
    }
    @SuppressWarnings("unchecked")
    List<QuerySlice>[] readers = new List[segments.size()];
    for (int gi = 0; gi < segments.size(); gi++) {
      readers[gi] = new java.util.ArrayList<>();
    }
    for (QuerySlice s : batch.slices()) {
      readers[s.segment()].add(s);
    }
    int[] items = new int[count * 2];
    long[] costs = new long[count];
    int n = 0;
    for (int gi = 0; gi < segments.size(); gi++) {
      int len = segments.get(gi).length();
      int blocks = ceilDiv(len, bn);
      for (int b = 0; b < blocks; b++) {
        long keyFrom = (long) b * bn;
        long keyTo = Math.min(len, keyFrom + bn);
        long cost = 0;
        for (QuerySlice s : readers[gi]) {
          cost += rowsSeeingKeys(s, keyFrom, keyTo);
        }
        items[2 * n] = gi;
        items[2 * n + 1] = b;
        costs[n] = cost;
        n++;
      }
    }
    return sortByCostDescending(items, costs);
  }

  /**
   * The backward work list with each key tile split {@link #groupSplits} ways (distca_attn.h section
   * 9: the block word names the query heads of the group that each piece walks), most expensive
   * first, or null where no split pays.
   */
  private static WorkList withGroupSplits(WorkList list, int headsKv, int group, int sms, int blockM,
      boolean leanDram, boolean causal, boolean shortUniform) {
    int[] splits = groupSplits(list.costs, headsKv, group, sms, blockM, leanDram, causal, shortUniform);
    return splits == null ? null : piecesOf(list, group, splits, false);
  }

  /**
   * {@code list}'s key tiles, item i in {@code splits[i]} pieces (the block word names the query
   * heads of the group that each walks), most expensive first, or with {@code headOrder} by the
   * pieces' first head first and most expensive first within each (stable either way).
   */
  private static WorkList piecesOf(WorkList list, int group, int[] splits, boolean headOrder) {
    int count = 0;
    for (int n : splits) {
      count = Math.addExact(count, n);
    }
    int[] items = new int[2 * count];
    long[] costs = new long[count];
    int[] firstHead = new int[count];
    int at = 0;
    for (int i = 0; i < splits.length; i++) {
      int block = list.items[2 * i + 1];
      if (block > DistcaAttnAbi.WORK_BLOCK_MASK) {
        throw new IllegalArgumentException("segment of over " + DistcaAttnAbi.WORK_BLOCK_MASK
            + " key blocks: past the backward work item's block word; split the batch");
      }
      int n = splits[i];
      for (int j = 0; j < n; j++) {
        int h0 = splitHeadBegin(j, n, group);
        int h1 = splitHeadBegin(j + 1, n, group);
        items[2 * at] = list.items[2 * i];
        items[2 * at + 1] = n == 1 ? block
            : block | h0 << DistcaAttnAbi.WORK_HEAD_SHIFT | (h1 - h0) << DistcaAttnAbi.WORK_HEADS_SHIFT;
        costs[at] = list.costs[i] * (h1 - h0);
        firstHead[at] = h0;
        at++;
      }
    }
    return headOrder ? sortByHeadThenCost(items, costs, firstHead) : sortByCostDescending(items, costs);
  }

  /**
   * The first query head of the GQA group that piece {@code j} of a key tile split {@code n} ways
   * walks (piece j: heads [splitHeadBegin(j), splitHeadBegin(j + 1)); schedule_policy.py split_heads).
   */
  static int splitHeadBegin(int j, int n, int group) {
    return j * group / n;
  }

  private static final int[] SPLIT_KAPPAS = {2, 3, 4, 6, 8, 12, 16};
  /** What the kernel that takes splits costs beyond its schedule: its steps this much longer ... */
  static final double SPLIT_STEP_COST = 0.06;
  /** ... and its dK/dV workspace (zeroed, then converted by two more passes) this many work items' overhead. */
  static final int SPLIT_FIXED_ITEMS = 7;
  /** What one more work item costs, in backward steps: its K/V load and its dK/dV output. */
  static final int SPLIT_OVERHEAD_STEPS = 2;
  /**
   * The pieces walk two query heads at least (groups of 4 heads and more) where the longest key
   * tile's walk of one head has this many steps ... (causal sequences of 2K-4K tokens at a block of
   * 64 query rows: native/NOTES.md v65, 1.01-1.6x there on an H100, 1.02-1.27x on an H200) ...
   */
  static final int SPLIT_PAIRS_MIN_STEPS = 32;
  /** ... to this many. */
  static final int SPLIT_PAIRS_MAX_STEPS = 64;
  /**
   * Where the longest key tile's walk of one head is shorter than {@link #SPLIT_PAIRS_MIN_STEPS}
   * (causal sequences of up to 1K tokens at 64 query rows a step), a key tile has at most this many
   * pieces (groups of 4 heads and more: native/NOTES.md v65, 1.04-1.22x on an H100).
   */
  static final int SPLIT_SHORT_MAX_PIECES = 2;
  /**
   * Where it has {@link #SPLIT_PAIRS_MIN_STEPS} to {@link #SPLIT_PAIRS_MAX_STEPS} steps, a key tile
   * has at most this many pieces (groups of 10 heads and more; native/NOTES.md v68: 16/1 and 32/1 at
   * 2K 1.39-1.49x on an H100, 1.02-1.28x on an H200; at 4K 32/1 1.53x, 16/1 0.975 and 0.994).
   */
  static final int SPLIT_PAIRS_MAX_PIECES = 4;
  /**
   * In batches of causal slices only, in groups of this many heads and more whose longest key tile's
   * walk of one head has {@link #SPLIT_UNIFORM_MIN_STEPS} up to (not including) {@link
   * #SPLIT_UNIFORM_END_STEPS} steps of at most {@link #SPLIT_UNIFORM_MAX_BLOCK_M} query rows (causal
   * documents of 2K up to 4K tokens at head_dim 128), every item of a split batch gets the same,
   * largest allowed number of pieces, not the model's fewer pieces for the shorter items
   * (native/NOTES.md v70: on an H100 12/1 at 2K 1.07-1.09x, 16/2 on a mix of documents up to 2K 1.10x,
   * 8/1 there 1.05x, elsewhere 0.99-1.03x; on an H200 16/2 on that mix 1.075x, 8/1 1.03x, elsewhere
   * 0.995-1.03x; groups under 8 heads 0.98-1.01 on the H200, 8/2 on mixes 0.975: left alone) ...
   */
  static final int SPLIT_UNIFORM_MIN_GROUP = 8;
  /** ... longest walks of one head from this many steps ... */
  static final int SPLIT_UNIFORM_MIN_STEPS = 32;
  /** ... up to this many (not included) ... */
  static final int SPLIT_UNIFORM_END_STEPS = 64;
  /**
   * ... of at most this many query rows (head_dim 128's 64; at head_dim 64's 128-row steps the lean
   * splits below read 1.02 for 16/2 and 0.975-0.98 for 32/4 at 4K on the H100) ...
   */
  static final int SPLIT_UNIFORM_MAX_BLOCK_M = 64;
  /**
   * ... and where that walk has {@link #SPLIT_UNIFORM_END_STEPS} steps or more (causal documents from
   * 4K tokens), a split batch's items all get min(group / 2, this) pieces (native/NOTES.md v71:
   * pieces of two heads up to groups of 16, of three to eight heads in larger ones; on an H100 24/1
   * to 64/1 at 8K-16K 1.24-1.61x, 32/2 on mixes of documents up to 6K-8K 1.10-1.15x, 16/1
   * 1.01-1.05x, 8/1 and 12/1 1.00-1.03x; on an H200 1.00-1.19x; shapes the model leaves whole
   * unchanged) ...
   */
  static final int SPLIT_UNIFORM_LONG_MAX_PIECES = 8;
  /**
   * ... but in groups of more than 4 x that many heads, pieces of at most four heads where the longest
   * walk has this many steps for each (native/NOTES.md v72: 40/1, 48/1, 64/1 at 8K-16K and on mixes of
   * documents up to 6K-8K 1.003-1.086x on an H100, 0.997-1.013 on an H200; sixteen pieces at 4K read
   * 0.65-0.78 on the H100, and pieces of two heads in groups of 24 0.97-1.00) ...
   */
  static final int SPLIT_UNIFORM_STEPS_PER_PIECE = 8;
  /**
   * ... and on a GPU with less DRAM bandwidth per SM than this (bytes/s; an H100 SXM has 25.4 GB/s,
   * an H200 36.5), those batches split even where the schedule model finds no gain: their unsplit
   * (chunked) walks over many heads miss the L2, which the model does not see, and on the H100 those
   * misses cost more than the split kernel's longer steps (native/NOTES.md v69: 32/2 at 2K 1.14x,
   * 24/2 1.12-1.14x, 48/4 1.08-1.09x, 16/2 1.05x, varlen mixes of documents up to 2K 1.00-1.12x; on
   * the H200 the same splits read 0.93-1.01, non-causal walks, whose key tiles stay on the same query
   * tiles, 0.90-0.93 on the H100, and walks under 32 steps, two pieces a key tile, 1.00-1.08x at
   * uniform 1K but 0.91-0.93 on a mix of documents up to 1K).
   */
  static final double SPLIT_LEAN_DRAM_BYTES_PER_SM = 30e9;
  /**
   * From this head dim (256, whose backward has 64-key tiles), a causal batch split where the longest
   * walk of one head is under {@link #SPLIT_PAIRS_MIN_STEPS} steps splits every item into the same
   * {@link #SPLIT_SHORT_MAX_PIECES} pieces, not the model's pieces for the longest items only
   * (native/NOTES.md v79, H200, d256 backward against the model's pieces: 8/1 and 6/1 on mixes of
   * documents up to 1K-2K +6-10%, 16/1 +2.5-4%, 4/1 +0.3-1.9%; against no splits 8/1 +5-11%, but
   * 16/1 on mixes up to 1K-1.2K 0.95).
   */
  static final int SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM = 256;
  /**
   * In groups of this many heads and more whose longest one-head walk has {@link
   * #SPLIT_SHORT_WIDE_MIN_STEPS} up to (not including) {@link #SPLIT_PAIRS_MIN_STEPS} steps, an item
   * has at most {@link #SPLIT_PAIRS_MAX_PIECES} pieces, not {@link #SPLIT_SHORT_MAX_PIECES}
   * (native/NOTES.md v80, H200, d128 backward against two: 12/1 to 32/1 at 1K and on mixes of
   * documents up to 1K-2K +4-21%, 24/2 and 32/2 +5-9%, 24/2 on one mix 0.98; at 512, 8 steps, four
   * read 0.88; d64 on its 64-row steps likewise, but 16/1 at 1K 0.97-0.98).
   */
  static final int SPLIT_SHORT_WIDE_MIN_GROUP = 12;
  static final int SPLIT_SHORT_WIDE_MIN_STEPS = 12;
  /**
   * From this head dim (256), a causal batch in GQA groups of {@link #L2_ORDER_MIN_GROUP} to {@link
   * #L2_ORDER_MAX_GROUP} heads (the group sizes measured) whose longest one-head walk has {@link
   * #L2_ORDER_MIN_STEPS} up to (not including) {@link #SPLIT_PAIRS_MAX_STEPS} steps splits every key
   * tile into min(group / 2, {@link #SPLIT_PAIRS_MAX_PIECES}) pieces, whatever the schedule model
   * finds, with the work list ordered by the pieces' head ranges first and no bands: the CTAs running
   * side by side then walk the same few heads, whose Q/dO tiles and dQ rows stay in the L2, where a
   * key tile's walk of its whole group (or the pieces longest first) reads every head's at once
   * (native/NOTES.md v79, H200, d256 backward against the policy without it: 8/1, 16/1, 16/2 and 32/4
   * at 1K-2K and on mixes of documents up to 1K-2K +6-31%, up to 3K 1.00-1.25; in a trial without the
   * bounds groups of 4 lost 4-20%, groups of 6 read 0.95-1.07, walks of 8-10 steps lost up to 12%).
   */
  static final int L2_ORDER_MIN_HEAD_DIM = 256;
  static final int L2_ORDER_MIN_GROUP = 8;
  static final int L2_ORDER_MAX_GROUP = 16;
  static final int L2_ORDER_MIN_STEPS = 12;
  /**
   * ... and a causal batch in larger groups (over {@link #L2_ORDER_MAX_GROUP} heads, up to the split
   * kernel's {@link DistcaAttnAbi#MAX_SPLIT_GROUP}), from walks of {@link #L2_ORDER_SHORT_MIN_STEPS}
   * steps, every key tile into this many
   * pieces in groups of up to 32 heads, {@link #L2_ORDER_WIDE_MANY_PIECES} in larger ones, at most
   * group / 2 (native/NOTES.md v80, H200, d256 backward against v79's policy from 512 to 16K tokens
   * and on mixes of documents up to 8K: 20/1 to 64/2 +4-89%, but 20/1 on the longest mix 0.98).
   */
  static final int L2_ORDER_WIDE_PIECES = 8;
  static final int L2_ORDER_WIDE_MANY_PIECES = 16;
  /**
   * ... and groups of {@link #L2_ORDER_MIN_GROUP} to {@link #L2_ORDER_MAX_GROUP} heads whose walks
   * are longer ({@link #SPLIT_PAIRS_MAX_STEPS} steps and more) where there are this many K/V heads or
   * more (native/NOTES.md v80, H200, d256: 16/2, 24/2, 32/2, 32/4, 48/4, 64/4, 64/8 at 4K-16K and on
   * mixes up to 6K-8K +2-59%; with one K/V head the mixes lost 6-14%).
   */
  static final int L2_ORDER_LONG_MIN_HEADS_KV = 2;
  /**
   * ... and in groups of this many heads up to {@link #L2_ORDER_MAX_GROUP} from walks of {@link
   * #L2_ORDER_SHORT_MIN_STEPS} steps, not {@link #L2_ORDER_MIN_STEPS} (native/NOTES.md v80, H200, d256,
   * 512 and mixes of documents up to 400-700 tokens: 12/1 +4-9%, 16/1 +9-15%, 24/2 +0-6%, 32/2
   * +6-24%; walks of 4 steps lost 9-15%, groups of 8 lost 2-23% at 6-11 steps).
   */
  static final int L2_ORDER_SHORT_MIN_GROUP = 12;
  static final int L2_ORDER_SHORT_MIN_STEPS = 6;

  /**
   * The pieces of every key tile under {@link #L2_ORDER_MIN_HEAD_DIM}'s rules, or 0 where they do
   * not apply. {@code costs}: each key tile's query rows for one head; {@code blockM}: a step's rows;
   * {@code headsKv}: the batch's K/V heads.
   */
  static int l2OrderPieces(long[] costs, int group, int blockM, boolean causal, int headDim, int headsKv) {
    if (headDim < L2_ORDER_MIN_HEAD_DIM || !causal || group < L2_ORDER_MIN_GROUP
        || group > DistcaAttnAbi.MAX_SPLIT_GROUP || costs.length == 0) {
      return 0;
    }
    long longest = 0;
    for (long c : costs) {
      longest = Math.max(longest, c);
    }
    if (group > L2_ORDER_MAX_GROUP) { // (measured from 8-step walks; the floor of groups of 12-16)
      return longest < (long) L2_ORDER_SHORT_MIN_STEPS * blockM ? 0
          : Math.min(group / 2, group <= 32 ? L2_ORDER_WIDE_PIECES : L2_ORDER_WIDE_MANY_PIECES);
    }
    long longWalk = (long) SPLIT_PAIRS_MAX_STEPS * blockM;
    int shortestWalk = group >= L2_ORDER_SHORT_MIN_GROUP ? L2_ORDER_SHORT_MIN_STEPS : L2_ORDER_MIN_STEPS;
    boolean inRange = longest >= (long) shortestWalk * blockM && longest < longWalk
        || headsKv >= L2_ORDER_LONG_MIN_HEADS_KV && longest >= longWalk;
    return inRange ? Math.min(group / 2, SPLIT_PAIRS_MAX_PIECES) : 0;
  }

  /**
   * How many group splits each backward work item gets (distca_attn.h section 9), or null where
   * splitting does not pay. {@code costs}: each item's work for one query head (query rows that see
   * its key tile), the same for each of {@code headsKv} K/V heads; {@code blockM}: the query rows
   * of a backward step (one more work item costs {@link #SPLIT_OVERHEAD_STEPS} steps). Pieces of at
   * most C / (kappa * sms) (C: all the work) for the kappa whose longest-first schedule on {@code
   * sms} SMs ends first, if that, times 1 + {@link #SPLIT_STEP_COST} plus {@link #SPLIT_FIXED_ITEMS} overheads, ends
   * before the unsplit schedule (the split kernel's costs as measured on an H200 from 512 to 16K
   * tokens: native/NOTES.md v63); groups of 2..64 heads only, and only where the
   * longest item exceeds a quarter of an SM's share (below that, longest-first is near even); in
   * groups of 4 heads and more, pieces of two heads at least where the longest item's walk of one
   * head has {@link #SPLIT_PAIRS_MIN_STEPS} to {@link #SPLIT_PAIRS_MAX_STEPS} steps (and there at
   * most {@link #SPLIT_PAIRS_MAX_PIECES} pieces of an item), and at most
   * {@link #SPLIT_SHORT_MAX_PIECES} pieces of an item where it is shorter. Where {@code causal}
   * (every slice of the batch is), in groups of {@link #SPLIT_UNIFORM_MIN_GROUP} heads and more whose
   * longest one-head walk has {@link #SPLIT_UNIFORM_MIN_STEPS} up to {@link #SPLIT_UNIFORM_END_STEPS}
   * steps of at most {@link #SPLIT_UNIFORM_MAX_BLOCK_M} rows, a split batch splits every item into the
   * same, largest allowed number of pieces (native/NOTES.md v70), where that walk is longer into
   * min(group / 2, {@link #SPLIT_UNIFORM_LONG_MAX_PIECES}) pieces (v71; in groups over 32 heads up to a
   * piece of four heads for each {@link #SPLIT_UNIFORM_STEPS_PER_PIECE} steps of the walk: v72), and
   * with {@code leanDram} (a GPU with less than {@link #SPLIT_LEAN_DRAM_BYTES_PER_SM}) it splits so
   * even where the model finds no split that pays (v69: fewer pieces for the shorter items read
   * 0.78-0.86 at 2K there). With {@code shortUniform} (head dims from {@link
   * #SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM}), a causal split batch in groups of 4 heads and more whose
   * longest one-head walk is under {@link #SPLIT_PAIRS_MIN_STEPS} steps splits every item into
   * {@link #SPLIT_SHORT_MAX_PIECES} pieces (v79). In groups of {@link #SPLIT_SHORT_WIDE_MIN_GROUP}
   * heads and more whose longest one-head walk has {@link #SPLIT_SHORT_WIDE_MIN_STEPS} up to {@link
   * #SPLIT_PAIRS_MIN_STEPS} steps, an item has up to {@link #SPLIT_PAIRS_MAX_PIECES} pieces (v80). The
   * Python host's policy is the same
   * (native/bench/schedule_policy.py, group_splits; SchedulePolicyParityTest compares the two).
   */
  static int[] groupSplits(long[] costs, int headsKv, int group, int sms, int blockM, boolean leanDram,
      boolean causal, boolean shortUniform) {
    if (group < 2 || group > DistcaAttnAbi.MAX_SPLIT_GROUP || costs.length == 0 || sms < 1) {
      return null;
    }
    long overhead = (long) SPLIT_OVERHEAD_STEPS * blockM;
    double total = 0;
    long longest = 0;
    for (long c : costs) {
      total += (double) c * group * headsKv;
      longest = Math.max(longest, c);
    }
    if (longest * group <= total / (4.0 * sms)) {
      return null;
    }
    int most = group; // the most pieces of one item
    if (group >= SPLIT_SHORT_WIDE_MIN_GROUP && longest >= (long) SPLIT_SHORT_WIDE_MIN_STEPS * blockM
        && longest < (long) SPLIT_PAIRS_MIN_STEPS * blockM) {
      most = Math.min(group, SPLIT_PAIRS_MAX_PIECES);
    } else if (group >= 4 && longest < (long) SPLIT_PAIRS_MIN_STEPS * blockM) {
      most = Math.min(group, SPLIT_SHORT_MAX_PIECES);
    } else if (group >= 4 && longest <= (long) SPLIT_PAIRS_MAX_STEPS * blockM) {
      most = Math.min(group / 2, SPLIT_PAIRS_MAX_PIECES);
    }
    int[] none = new int[costs.length];
    Arrays.fill(none, 1);
    double unsplit = makespan(costs, none, headsKv, group, sms, overhead);
    double best = unsplit;
    int[] bestSplits = null;
    for (int kappa : SPLIT_KAPPAS) {
      double bound = total / ((double) kappa * sms);
      int[] splits = new int[costs.length];
      boolean any = false;
      for (int i = 0; i < costs.length; i++) {
        splits[i] = bound > 0 ? (int) Math.max(1, Math.min(most, Math.ceil(group * (double) costs[i] / bound))) : 1;
        any |= splits[i] > 1;
      }
      if (!any) {
        continue;
      }
      double t = makespan(costs, splits, headsKv, group, sms, overhead);
      if (t < best) {
        best = t;
        bestSplits = splits;
      }
    }
    boolean paid = bestSplits != null && best * (1 + SPLIT_STEP_COST) + SPLIT_FIXED_ITEMS * overhead < unsplit;
    if (causal && group >= SPLIT_UNIFORM_MIN_GROUP && blockM <= SPLIT_UNIFORM_MAX_BLOCK_M) {
      long end = (long) SPLIT_UNIFORM_END_STEPS * blockM;
      if (longest >= (long) SPLIT_UNIFORM_MIN_STEPS * blockM && longest < end && (paid || leanDram)) {
        return uniformSplits(costs.length, most);
      }
      if (paid && longest >= end) {
        long byWalk = Math.min((group + 3) / 4, longest / ((long) blockM * SPLIT_UNIFORM_STEPS_PER_PIECE));
        return uniformSplits(costs.length, (int) Math.min(group / 2, Math.max(SPLIT_UNIFORM_LONG_MAX_PIECES, byWalk)));
      }
    }
    if (shortUniform && paid && causal && group >= 4 && longest < (long) SPLIT_PAIRS_MIN_STEPS * blockM) {
      return uniformSplits(costs.length, most);
    }
    return paid ? bestSplits : null;
  }

  private static int[] uniformSplits(int items, int pieces) {
    int[] splits = new int[items];
    Arrays.fill(splits, pieces);
    return splits;
  }

  /**
   * {@link #groupSplits(long[], int, int, int, int, boolean, boolean, boolean)} below {@link
   * #SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM}.
   */
  static int[] groupSplits(long[] costs, int headsKv, int group, int sms, int blockM, boolean leanDram,
      boolean causal) {
    return groupSplits(costs, headsKv, group, sms, blockM, leanDram, causal, false);
  }

  /**
   * {@link #groupSplits(long[], int, int, int, int, boolean, boolean, boolean)} on a GPU with DRAM
   * bandwidth to spare.
   */
  static int[] groupSplits(long[] costs, int headsKv, int group, int sms, int blockM) {
    return groupSplits(costs, headsKv, group, sms, blockM, false, false, false);
  }

  /**
   * Whether a GPU with {@code dramBytesPerSm} of DRAM bandwidth per SM ({@link CudaDevice#dramBytesPerSm},
   * 0 where unknown) takes the lean-DRAM splits of {@link #groupSplits(long[], int, int, int, int,
   * boolean, boolean)}.
   */
  static boolean leanDram(double dramBytesPerSm) {
    return dramBytesPerSm > 0 && dramBytesPerSm < SPLIT_LEAN_DRAM_BYTES_PER_SM;
  }

  /** Whether every slice of the batch is causal (a batch without slices is not). */
  private static boolean allCausal(AttentionBatch batch) {
    return !batch.slices().isEmpty() && batch.slices().stream().allMatch(QuerySlice::causal);
  }

  /**
   * The longest SM's load when the pieces go, most expensive first, each to the least loaded SM: the
   * claim order of {@link WorkBands#makespan} with every K/V head's copy of a piece side by side.
   */
  private static double makespan(long[] costs, int[] splits, int headsKv, int group, int sms, long overhead) {
    int count = 0;
    for (int n : splits) {
      count += n;
    }
    long[] pieces = new long[count];
    int at = 0;
    for (int i = 0; i < costs.length; i++) {
      int n = splits[i];
      for (int j = 0; j < n; j++) {
        pieces[at++] = costs[i] * (splitHeadBegin(j + 1, n, group) - splitHeadBegin(j, n, group)) + overhead;
      }
    }
    Arrays.sort(pieces);
    for (int lo = 0, hi = pieces.length - 1; lo < hi; lo++, hi--) { // most expensive first
      long t = pieces[lo];
      pieces[lo] = pieces[hi];
      pieces[hi] = t;
    }
    return WorkBands.makespan(pieces, headsKv, headsKv, sms, WorkBands.NONE);
  }

  /** Query rows of {@code s} that see at least one key of segment rows [keyFrom, keyTo). */
  static long rowsSeeingKeys(QuerySlice s, long keyFrom, long keyTo) {
    long j0 = Math.max(keyFrom - s.kvStart(), 0);
    long j1 = Math.min(keyTo - s.kvStart(), s.kvLen());
    if (j0 >= j1 || s.qLen() == 0) {
      return 0;
    }
    if (!s.causal()) {
      return s.qLen();
    }
    // Row i sees keys j <= i + diagonal, so it sees some key of [j0, j1) iff i >= j0 - diagonal.
    long firstRow = Math.max(0, j0 - s.diagonal());
    return Math.max(0, s.qLen() - firstRow);
  }

  private static WorkList sortByCostDescending(int[] items, long[] costs) {
    return sortBy(items, costs, (a, b) -> Long.compare(costs[b], costs[a]));
  }

  private static WorkList sortByHeadThenCost(int[] items, long[] costs, int[] firstHead) {
    return sortBy(items, costs, (a, b) -> firstHead[a] != firstHead[b] ? Integer.compare(firstHead[a], firstHead[b])
        : Long.compare(costs[b], costs[a]));
  }

  private static WorkList sortBy(int[] items, long[] costs, Comparator<Integer> comparator) {
    int n = costs.length;
    Integer[] order = new Integer[n];
    for (int i = 0; i < n; i++) {
      order[i] = i;
    }
    // Stable: equal keys keep list order, so the plan is deterministic for the same batch.
    Arrays.sort(order, comparator);
    int[] sortedItems = new int[items.length];
    long[] sortedCosts = new long[n];
    for (int i = 0; i < n; i++) {
      int from = order[i];
      sortedItems[2 * i] = items[2 * from];
      sortedItems[2 * i + 1] = items[2 * from + 1];
      sortedCosts[i] = costs[from];
    }
    return new WorkList(sortedItems, sortedCosts);
  }

  private static void requireMatchingDtypes(AttentionBatch batch, Pass pass) {
    var dtype = batch.shape().dtype();
    for (int g = 0; g < batch.segments().size(); g++) {
      KvSegment seg = batch.segments().get(g);
      requireDtype(seg.k(), dtype, "segment " + g + " k");
      requireDtype(seg.v(), dtype, "segment " + g + " v");
      if (pass == Pass.BACKWARD) {
        requireDtype(seg.dk(), dtype, "segment " + g + " dk");
        requireDtype(seg.dv(), dtype, "segment " + g + " dv");
      }
    }
    for (int i = 0; i < batch.slices().size(); i++) {
      QuerySlice s = batch.slices().get(i);
      requireDtype(s.q(), dtype, "slice " + i + " q");
      if (pass == Pass.FORWARD) {
        requireDtype(s.o(), dtype, "slice " + i + " o");
      } else {
        requireDtype(s.dO(), dtype, "slice " + i + " dO");
        requireDtype(s.dq(), dtype, "slice " + i + " dq");
      }
    }
  }

  private static void requireDtype(Tensor t, io.distca.protocol.tensor.DType dtype, String what) {
    if (t.dtype() != dtype) {
      throw new IllegalArgumentException(what + " is " + t.dtype() + " but the batch shape says " + dtype
          + "; the CUDA backend copies raw bytes and needs one dtype");
    }
  }

  private static void requireInt32(long value, String what) {
    if (value > Integer.MAX_VALUE) {
      throw new IllegalArgumentException(what + " " + value + " exceed the kernels' int32 indexing; split the batch");
    }
  }

  static int ceilDiv(int a, int b) {
    return (int) ((a + (long) b - 1) / b);
  }

  static long ceilDiv(long a, long b) {
    return (a + b - 1) / b;
  }
}
