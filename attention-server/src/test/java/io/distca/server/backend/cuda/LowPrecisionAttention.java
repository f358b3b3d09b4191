package io.distca.server.backend.cuda;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.HalfFloats;
import io.distca.server.backend.CausalMask;
import io.distca.server.backend.ReferenceAttention;
import io.distca.server.backend.ReferenceAttention.DoubleBatch;
import io.distca.server.backend.ReferenceAttention.DoubleSegment;
import io.distca.server.backend.ReferenceAttention.DoubleSlice;
import io.distca.server.backend.ReferenceAttention.ForwardResult;
import io.distca.server.backend.ReferenceAttention.Gradients;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Attention the way a framework's plain bf16/fp16 implementation computes it (PyTorch's math path):
 * every matrix product's result and the softmax probabilities are rounded to the input dtype. Its
 * error against the float64 reference is the baseline of FlashAttention's test rule: a kernel passes
 * when its own error is at most twice this baseline plus a rounding-sized atol.
 */
final class LowPrecisionAttention {
  private LowPrecisionAttention() {}

  static double round(double x, DType dtype) {
    float f = (float) x;
    switch (dtype) {
      case BF16:
        return HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(f));
      case FP16:
        return HalfFloats.fp16ToFloat(HalfFloats.floatToFp16(f));
      default:
        return f;
    }
  }

  static ForwardResult forward(DoubleBatch b, DType dtype) {
    int hq = b.headsQ();
    int d = b.headDim();
    int group = hq / b.headsKv();
    return ReferenceAttention.forwardByHead(b, (s, head, out, lse) -> {
      DoubleSegment seg = b.segments().get(s.segment());
      int kvHead = head / group;
      double[] scores = new double[Math.max(1, s.kvLen())];
      for (int row = 0; row < s.qLen(); row++) {
        int keys = CausalMask.keyEnd(s.causal(), s.diagonal(), s.kvLen(), row);
        int qAt = (row * hq + head) * d;
        if (keys == 0) {
          lse[head * s.qLen() + row] = Double.NEGATIVE_INFINITY;
          continue;
        }
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < keys; j++) {
          int kAt = ((s.kvStart() + j) * b.headsKv() + kvHead) * d;
          scores[j] = (float) (round(dot(s.q(), qAt, seg.k(), kAt, d), dtype) * b.scale());
          max = Math.max(max, scores[j]);
        }
        double sum = 0;
        for (int j = 0; j < keys; j++) {
          scores[j] = (float) Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (int j = 0; j < keys; j++) {
          double p = round(scores[j] / sum, dtype);
          int vAt = ((s.kvStart() + j) * b.headsKv() + kvHead) * d;
          for (int e = 0; e < d; e++) {
            out[qAt + e] += p * seg.v()[vAt + e];
          }
        }
        for (int e = 0; e < d; e++) {
          out[qAt + e] = round(out[qAt + e], dtype);
        }
        lse[head * s.qLen() + row] = (float) (max + Math.log(sum));
      }
    });
  }

  static Gradients backward(DoubleBatch b, List<double[]> o, List<double[]> lse, List<double[]> dO, DType dtype) {
    int hq = b.headsQ();
    int hkv = b.headsKv();
    int d = b.headDim();
    int group = hq / hkv;
    List<double[]> dq = new ArrayList<>();
    for (DoubleSlice s : b.slices()) {
      dq.add(new double[s.qLen() * hq * d]);
    }
    List<double[]> dk = new ArrayList<>();
    List<double[]> dv = new ArrayList<>();
    for (DoubleSegment seg : b.segments()) {
      dk.add(new double[seg.length() * hkv * d]);
      dv.add(new double[seg.length() * hkv * d]);
    }
    // One task per (segment, kv head): the only writer of its dK/dV rows and its group's dQ.
    IntStream.range(0, b.segments().size() * hkv).parallel().forEach(task -> {
      int g = task / hkv;
      int kvHead = task % hkv;
      DoubleSegment seg = b.segments().get(g);
      for (int si = 0; si < b.slices().size(); si++) {
        DoubleSlice s = b.slices().get(si);
        if (s.segment() != g) {
          continue;
        }
        for (int head = kvHead * group; head < (kvHead + 1) * group; head++) {
          for (int row = 0; row < s.qLen(); row++) {
            int keys = CausalMask.keyEnd(s.causal(), s.diagonal(), s.kvLen(), row);
            int qAt = (row * hq + head) * d;
            double rowLse = lse.get(si)[head * s.qLen() + row];
            double delta = (float) dot(dO.get(si), qAt, o.get(si), qAt, d);
            for (int j = 0; j < keys; j++) {
              int kAt = ((s.kvStart() + j) * hkv + kvHead) * d;
              double score = round(dot(s.q(), qAt, seg.k(), kAt, d), dtype);
              double p = round(Math.exp(score * b.scale() - rowLse), dtype);
              double dp = round(dot(dO.get(si), qAt, seg.v(), kAt, d), dtype);
              double ds = round(p * (dp - delta), dtype);
              for (int e = 0; e < d; e++) {
                dq.get(si)[qAt + e] += b.scale() * ds * seg.k()[kAt + e];
                dk.get(g)[kAt + e] += b.scale() * ds * s.q()[qAt + e];
                dv.get(g)[kAt + e] += p * dO.get(si)[qAt + e];
              }
            }
          }
        }
      }
    });
    for (List<double[]> list : List.of(dq, dk, dv)) {
      for (double[] values : list) {
        for (int i = 0; i < values.length; i++) {
          values[i] = round(values[i], dtype);
        }
      }
    }
    return new Gradients(dq, dk, dv);
  }

  private static double dot(double[] a, int aAt, double[] b, int bAt, int n) {
    double sum = 0;
    for (int e = 0; e < n; e++) {
      sum += a[aAt + e] * b[bAt + e];
    }
    return sum;
  }
}
