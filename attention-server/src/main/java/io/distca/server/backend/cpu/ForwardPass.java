package io.distca.server.backend.cpu;

import io.distca.protocol.model.CostModel;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.CausalMask;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.LseView;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Forward of one batch: FlashAttention-style online softmax over key tiles. A work unit is one query
 * tile of one head of one slice; it alone writes its rows of O and LSE, so units never share output.
 * Memory per worker is a few tiles, whatever the lengths.
 */
final class ForwardPass extends TiledPass {
  private record Unit(int slice, int head, int row0, int rows, long cost) {}

  private final List<Unit> units = new ArrayList<>();

  ForwardPass(AttentionBatch batch, CpuBackendOptions options) {
    super(batch, options);
    List<QuerySlice> slices = batch.slices();
    for (int i = 0; i < slices.size(); i++) {
      QuerySlice s = slices.get(i);
      for (int row0 = 0; row0 < s.qLen(); row0 += queryBlock) {
        int rows = Math.min(queryBlock, s.qLen() - row0);
        // tile rows are rows row0.. of the slice, so the tile's diagonal is shifted by row0
        long cost = CostModel.pairs(rows, s.kvLen(), s.causal(), (long) s.diagonal() + row0);
        for (int h = 0; h < headsQ; h++) {
          units.add(new Unit(i, h, row0, rows, cost));
        }
      }
    }
    units.sort(Comparator.comparingLong(Unit::cost).reversed());
  }

  @Override
  void run(WorkerPool pool) {
    pool.runAll(units.size(), (index, scratch) -> runUnit(units.get(index), scratch));
  }

  private void runUnit(Unit u, Scratch t) {
    t.forForward(queryBlock, keyBlock, headDim);
    QuerySlice s = batch.slices().get(u.slice());
    KvSegment seg = batch.segments().get(s.segment());
    int kvHead = u.head() / groupSize;
    int rows = u.rows();
    int d = headDim;
    float[][] q = t.query;
    float[][] scores = t.scores;
    float[][] acc = t.outAcc;
    float[] rowMax = t.rowMax;
    float[] rowSum = t.rowSum;
    int[] keyEnd = t.rowKeyEnd;

    // Folding the softmax scale into Q makes every score already scaled, so LSE = max + ln(sum).
    TileIo.loadRows(s.q(), headsQ, u.head(), d, u.row0(), rows, scale, q, 0);
    int lastKey = 0;
    for (int r = 0; r < rows; r++) {
      keyEnd[r] = CausalMask.keyEnd(s, u.row0() + r);
      lastKey = Math.max(lastKey, keyEnd[r]);
      rowMax[r] = Float.NEGATIVE_INFINITY;
      rowSum[r] = 0f;
      java.util.Arrays.fill(acc[r], 0, d, 0f);
    }

    for (int k0 = 0; k0 < lastKey; k0 += keyBlock) {
      int width = Math.min(keyBlock, lastKey - k0);
      TileIo.loadColumns(seg.k(), headsKv, kvHead, d, s.kvStart() + k0, width, t.keysT, 0, 0);
      TileIo.loadRows(seg.v(), headsKv, kvHead, d, s.kvStart() + k0, width, 1f, t.values, 0);
      // keyEnd is non-decreasing in the row, so the rows that see this tile are a suffix
      int firstRow = 0;
      while (firstRow < rows && keyEnd[firstRow] <= k0) {
        firstRow++;
      }
      TileMath.multiplyByTransposed(q, firstRow, rows, t.keysT, 0, d, width, scores);
      for (int r = firstRow; r < rows; r++) {
        int seen = Math.min(keyEnd[r], k0 + width) - k0;
        float[] p = scores[r];
        float previousMax = rowMax[r];
        float newMax = TileMath.max(p, 0, seen, previousMax);
        // exp(-inf - finite) is 0: a row's first tile needs no special case
        float correction = TileMath.exp(previousMax - newMax);
        float sum = 0f;
        for (int c = 0; c < seen; c++) {
          p[c] = TileMath.exp(p[c] - newMax);
          sum += p[c];
        }
        rowSum[r] = rowSum[r] * correction + sum;
        rowMax[r] = newMax;
        if (correction != 1f) {
          TileMath.scale(acc[r], d, correction);
        }
        TileMath.addWeightedRows(acc[r], p, 0, seen, t.values, 0, d);
      }
    }

    LseView lse = s.lse();
    for (int r = 0; r < rows; r++) {
      float lseValue;
      float inverse;
      if (rowSum[r] == 0f) { // the row sees no key: O = 0, LSE = -inf
        lseValue = Float.NEGATIVE_INFINITY;
        inverse = 0f;
      } else {
        lseValue = rowMax[r] + (float) Math.log(rowSum[r]);
        inverse = 1f / rowSum[r];
      }
      TileIo.writeFloat32(lse.lse(), lse.index(u.head(), u.row0() + r), lseValue);
      TileIo.storeRows(acc, r, 1, inverse, s.o(), headsQ, u.head(), d, u.row0() + r);
    }
  }
}
