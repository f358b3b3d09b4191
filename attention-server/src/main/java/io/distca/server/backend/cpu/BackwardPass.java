package io.distca.server.backend.cpu;

import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.CausalMask;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Backward of one batch without atomics on dK/dV. A work unit owns a chunk of keys of one segment
 * and one kv head: it walks every slice that reads those keys and every query head of the group,
 * summing dK and dV in private fp32 scratch, and writes its rows once at the end. That is also how
 * dK/dV of several slices sharing a segment (KV dedup) get summed.
 *
 * <p>dQ of a (slice, head) row collects a term from every key chunk the row sees. When one unit
 * covers all the keys of its (segment, kv head) it is the only writer of those dQ rows and writes
 * them directly. When a (segment, kv head) is cut into several chunks (long keys, or to keep every
 * thread busy), its units add their dQ tiles into an fp32 accumulator per (slice, head) under a lock
 * per query tile, and a last phase narrows the accumulators into dQ (as FlashAttention-2's dq_accum;
 * the order of those additions, and so the last bits of such dQ, depends on scheduling).
 */
final class BackwardPass extends TiledPass {
  private record Unit(int segment, int kvHead, int keyStart, int keyEnd, boolean split, long cost) {}

  /** A (slice, head) whose dQ is summed across units. */
  private static final class DqAccumulator {
    final int slice;
    final int head;
    final float[] sum;
    final Object[] tileLocks;

    DqAccumulator(int slice, int head, int rows, int headDim, int queryBlock) {
      this.slice = slice;
      this.head = head;
      this.sum = new float[Math.multiplyExact(rows, headDim)];
      this.tileLocks = new Object[(rows + queryBlock - 1) / queryBlock];
      for (int i = 0; i < tileLocks.length; i++) {
        tileLocks[i] = new Object();
      }
    }
  }

  private final int keyChunk;
  private final List<List<Integer>> slicesOfSegment = new ArrayList<>();
  private final List<Unit> units = new ArrayList<>();
  /** Indexed by slice * headsQ + head; null where dQ is written directly. */
  private final DqAccumulator[] accumulators;
  private final List<DqAccumulator> usedAccumulators = new ArrayList<>();

  BackwardPass(AttentionBatch batch, CpuBackendOptions options, int threads) {
    super(batch, options);
    this.keyChunk = options.backwardKeyChunk();
    this.accumulators = new DqAccumulator[Math.multiplyExact(batch.slices().size(), headsQ)];
    planUnits(options.unitsPerThread(), threads);
  }

  private void planUnits(int unitsPerThread, int threads) {
    List<KvSegment> segments = batch.segments();
    List<QuerySlice> slices = batch.slices();
    for (int i = 0; i < segments.size(); i++) {
      slicesOfSegment.add(new ArrayList<>());
    }
    for (int i = 0; i < slices.size(); i++) {
      QuerySlice s = slices.get(i);
      if (s.qLen() > 0 && s.kvLen() > 0) {
        slicesOfSegment.get(s.segment()).add(i);
      }
    }
    // keyCost[seg][key - readStart]: query rows (of one head) that see that key, over all slices
    long[][] keyCost = new long[segments.size()][];
    int[] readStart = new int[segments.size()];
    long total = 0;
    for (int seg = 0; seg < segments.size(); seg++) {
      int lo = Integer.MAX_VALUE;
      int hi = 0;
      for (int i : slicesOfSegment.get(seg)) {
        lo = Math.min(lo, slices.get(i).kvStart());
        hi = Math.max(hi, slices.get(i).kvStart() + slices.get(i).kvLen());
      }
      if (lo >= hi) {
        continue;
      }
      readStart[seg] = lo;
      long[] cost = new long[hi - lo];
      for (int i : slicesOfSegment.get(seg)) {
        QuerySlice s = slices.get(i);
        for (int j = 0; j < s.kvLen(); j++) {
          cost[s.kvStart() + j - lo] += s.qLen() - CausalMask.firstRowSeeing(s.causal(), s.diagonal(), s.qLen(), j);
        }
      }
      keyCost[seg] = cost;
      for (long c : cost) {
        total += c;
      }
    }
    // Cost of a unit = sum of keyCost over its keys * groupSize; the whole batch is total * headsQ.
    long target = threads == 1 ? Long.MAX_VALUE : Math.max(1, total * headsQ / ((long) threads * unitsPerThread));
    for (int seg = 0; seg < segments.size(); seg++) {
      long[] cost = keyCost[seg];
      if (cost == null) {
        continue;
      }
      List<int[]> chunks = new ArrayList<>();
      List<Long> chunkCosts = new ArrayList<>();
      int start = 0;
      long acc = 0;
      for (int k0 = 0; k0 < cost.length; k0 += keyBlock) {
        int k1 = Math.min(cost.length, k0 + keyBlock);
        long blockCost = 0;
        for (int k = k0; k < k1; k++) {
          blockCost += cost[k] * groupSize;
        }
        if (k0 > start && (acc + blockCost > target || k1 - start > keyChunk)) {
          chunks.add(new int[] {start, k0});
          chunkCosts.add(acc);
          start = k0;
          acc = 0;
        }
        acc += blockCost;
      }
      chunks.add(new int[] {start, cost.length});
      chunkCosts.add(acc);
      boolean split = chunks.size() > 1;
      for (int g = 0; g < headsKv; g++) {
        for (int c = 0; c < chunks.size(); c++) {
          int[] range = chunks.get(c);
          units.add(new Unit(seg, g, readStart[seg] + range[0], readStart[seg] + range[1], split, chunkCosts.get(c)));
        }
        if (split) {
          for (int i : slicesOfSegment.get(seg)) {
            for (int t = 0; t < groupSize; t++) {
              int head = g * groupSize + t;
              DqAccumulator a = new DqAccumulator(i, head, slices.get(i).qLen(), headDim, queryBlock);
              accumulators[i * headsQ + head] = a;
              usedAccumulators.add(a);
            }
          }
        }
      }
    }
    units.sort(Comparator.comparingLong(Unit::cost).reversed());
  }

  /** The planned units as {segment, kvHead, keyStart, keyEnd, split ? 1 : 0}, longest first (for tests). */
  List<int[]> plannedUnits() {
    List<int[]> out = new ArrayList<>();
    for (Unit u : units) {
      out.add(new int[] {u.segment(), u.kvHead(), u.keyStart(), u.keyEnd(), u.split() ? 1 : 0});
    }
    return out;
  }

  @Override
  void run(WorkerPool pool) {
    // Rows nobody reads and query rows that see no key keep these zeros.
    for (QuerySlice s : batch.slices()) {
      TileIo.zero(s.dq());
    }
    for (KvSegment seg : batch.segments()) {
      TileIo.zero(seg.dk());
      TileIo.zero(seg.dv());
    }
    pool.runAll(units.size(), (index, scratch) -> runUnit(units.get(index), scratch));
    pool.runAll(usedAccumulators.size(), (index, scratch) -> {
      DqAccumulator a = usedAccumulators.get(index);
      QuerySlice s = batch.slices().get(a.slice);
      TileIo.storePackedRows(a.sum, s.qLen(), 1f, s.dq(), headsQ, a.head, headDim, 0);
    });
  }

  private void runUnit(Unit u, Scratch t) {
    t.forBackward(queryBlock, keyBlock, keyChunk, headDim);
    KvSegment seg = batch.segments().get(u.segment());
    int d = headDim;
    int chunkStart = u.keyStart();
    int chunkLen = u.keyEnd() - chunkStart;
    // K as rows for dQ += dS K; K and V transposed per key tile (tile i at rows i * d) for S and dP
    TileIo.loadRows(seg.k(), headsKv, u.kvHead(), d, chunkStart, chunkLen, 1f, t.keys, 0);
    for (int k0 = 0; k0 < chunkLen; k0 += keyBlock) {
      int width = Math.min(keyBlock, chunkLen - k0);
      int tileRow = k0 / keyBlock * d;
      TileIo.loadColumns(seg.k(), headsKv, u.kvHead(), d, chunkStart + k0, width, t.keysT, tileRow, 0);
      TileIo.loadColumns(seg.v(), headsKv, u.kvHead(), d, chunkStart + k0, width, t.valuesT, tileRow, 0);
    }
    for (int k = 0; k < chunkLen; k++) {
      java.util.Arrays.fill(t.dKeys[k], 0, d, 0f);
      java.util.Arrays.fill(t.dValues[k], 0, d, 0f);
    }

    for (int sliceIndex : slicesOfSegment.get(u.segment())) {
      QuerySlice s = batch.slices().get(sliceIndex);
      int from = Math.max(chunkStart, s.kvStart());
      int to = Math.min(u.keyEnd(), s.kvStart() + s.kvLen());
      if (from >= to) {
        continue;
      }
      int firstRow = CausalMask.firstRowSeeing(s.causal(), s.diagonal(), s.qLen(), from - s.kvStart());
      // tiles on the slice's queryBlock grid, so that accumulator locks cover the same rows in every unit
      for (int h = u.kvHead() * groupSize; h < (u.kvHead() + 1) * groupSize; h++) {
        for (int row0 = firstRow / queryBlock * queryBlock; row0 < s.qLen(); row0 += queryBlock) {
          int rows = Math.min(queryBlock, s.qLen() - row0);
          queryTile(u, t, s, sliceIndex, h, row0, rows, from, to);
        }
      }
    }
    TileIo.storeRows(t.dKeys, 0, chunkLen, 1f, seg.dk(), headsKv, u.kvHead(), d, chunkStart);
    TileIo.storeRows(t.dValues, 0, chunkLen, 1f, seg.dv(), headsKv, u.kvHead(), d, chunkStart);
  }

  /** One query tile of one head against the keys [from, to) (segment rows) of the unit's chunk. */
  private void queryTile(Unit u, Scratch t, QuerySlice s, int sliceIndex, int head,
      int row0, int rows, int from, int to) {
    int d = headDim;
    int chunkStart = u.keyStart();
    float[][] q = t.query;
    float[][] dOut = t.dOut;
    float[][] scores = t.scores;
    float[][] dScores = t.dScores;
    float[][] dQuery = t.dQuery;
    float[] delta = t.rowDelta;
    float[] lseRow = t.rowLse;
    int[] keyEnd = t.rowKeyEnd; // exclusive, segment rows, clipped to [.., to]

    // Scaled Q: scores come out scaled, and dK = scale * dS^T Q is then dS^T (scale * Q).
    TileIo.loadRows(s.q(), headsQ, head, d, row0, rows, scale, q, 0);
    TileIo.loadRows(s.dO(), headsQ, head, d, row0, rows, 1f, dOut, 0);
    LseView lse = s.lse();
    LseView deltaView = s.delta();
    for (int r = 0; r < rows; r++) {
      delta[r] = TileIo.readFloat32(deltaView.lse(), deltaView.index(head, row0 + r));
      lseRow[r] = TileIo.readFloat32(lse.lse(), lse.index(head, row0 + r));
      keyEnd[r] = Math.min(to, s.kvStart() + CausalMask.keyEnd(s, row0 + r));
      java.util.Arrays.fill(dQuery[r], 0, d, 0f);
    }

    int lastKey = keyEnd[rows - 1];
    // key tiles of the chunk (chunk-relative offsets k0) that overlap [from, lastKey)
    for (int k0 = (from - chunkStart) / keyBlock * keyBlock; chunkStart + k0 < lastKey; k0 += keyBlock) {
      int tileStart = chunkStart + k0;
      int tileRow = k0 / keyBlock * d;
      int width = Math.min(keyBlock, u.keyEnd() - tileStart);
      int firstCol = Math.max(from, tileStart) - tileStart;
      int firstRow = 0;
      while (firstRow < rows && keyEnd[firstRow] - tileStart <= firstCol) {
        firstRow++;
      }
      if (firstRow == rows) {
        continue;
      }
      TileMath.multiplyByTransposed(q, firstRow, rows, t.keysT, tileRow, d, width, scores);
      TileMath.multiplyByTransposed(dOut, firstRow, rows, t.valuesT, tileRow, d, width, dScores);
      int lastCol = 0;
      for (int r = firstRow; r < rows; r++) {
        int endCol = Math.min(keyEnd[r] - tileStart, width);
        lastCol = Math.max(lastCol, endCol);
        float[] p = scores[r];
        float[] ds = dScores[r];
        float rowLse = lseRow[r];
        float rowDelta = delta[r];
        // masked entries become P = dS = 0, so the column loops below can run over whole ranges
        for (int c = 0; c < width; c++) {
          if (c >= firstCol && c < endCol) {
            p[c] = TileMath.exp(p[c] - rowLse);
            ds[c] = p[c] * (ds[c] - rowDelta);
          } else {
            p[c] = 0f;
            ds[c] = 0f;
          }
        }
        TileMath.addWeightedRows(dQuery[r], ds, firstCol, Math.max(firstCol, endCol), t.keys, k0, d);
      }
      for (int c = firstCol; c < lastCol; c++) {
        TileMath.addWeightedRowsByColumn(t.dValues[k0 + c], scores, c, firstRow, rows, dOut, d);
        TileMath.addWeightedRowsByColumn(t.dKeys[k0 + c], dScores, c, firstRow, rows, q, d);
      }
    }

    if (!u.split()) {
      TileIo.storeRows(dQuery, 0, rows, scale, s.dq(), headsQ, head, d, row0);
      return;
    }
    DqAccumulator a = accumulators[sliceIndex * headsQ + head];
    synchronized (a.tileLocks[row0 / queryBlock]) {
      for (int r = 0; r < rows; r++) {
        float[] row = dQuery[r];
        int at = (row0 + r) * d;
        for (int e = 0; e < d; e++) {
          a.sum[at + e] += scale * row[e];
        }
      }
    }
  }
}
