package io.distca.loadtest;

import io.distca.client.BackwardInput;
import io.distca.client.BackwardResult;
import io.distca.client.ForwardResult;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBackend;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Compares a sample of the cluster's results with core attention computed in this process on whole
 * documents ({@link LocalReference}): no sharding, no wire, no merging. The sample is a function of
 * the seed: a layer call is checked with probability {@code fraction}, and the first layer of each
 * rank's first step always is, so even a short run cannot pass with a wrong server.
 */
final class SpotCheck {
  private final AttentionBackend reference;
  private final double fraction;
  private final double tolerance;
  private final long seed;

  /** The outcome of one checked layer call: relative max error per output tensor. */
  record Result(long step, int rank, int layer, Map<String, Double> errors, boolean passed) {}

  /** A sampled layer's results, kept until the step has ended so that checking does not slow the step. */
  static final class Sampled implements AutoCloseable {
    final int layer;
    final ForwardResult forward;
    BackwardInput backwardInput;
    BackwardResult backward;

    Sampled(int layer, ForwardResult forward) {
      this.layer = layer;
      this.forward = forward;
    }

    @Override
    public void close() {
      forward.close();
      if (backward != null) {
        backward.close();
      }
    }
  }

  SpotCheck(AttentionBackend reference, double fraction, double tolerance, long seed) {
    this.reference = reference;
    this.fraction = fraction;
    this.tolerance = tolerance;
    this.seed = seed;
  }

  boolean sampled(long step, int rank, int layer) {
    if (fraction <= 0) {
      return false;
    }
    if (step == 0 && layer == 0) {
      return true;
    }
    return new SplittableRandom(StepInput.mix(seed ^ 0x5DEECE66DL, step, ((long) rank << 20) + layer)).nextDouble()
        < fraction;
  }

  /** Checks every sampled layer of one rank's step; the forward reference is computed once for all of them. */
  List<Result> verify(long step, int rank, StepInput input, List<Sampled> sampled, BufferAllocator allocator) {
    List<Result> results = new ArrayList<>();
    if (sampled.isEmpty()) {
      return results;
    }
    Tensor[] forwardRef = LocalReference.forward(reference, input.batch, allocator);
    try {
      for (Sampled s : sampled) {
        Map<String, Double> errors = new LinkedHashMap<>();
        errors.put("o", TensorCompare.relativeMaxError(s.forward.o(), forwardRef[0]));
        errors.put("lse", TensorCompare.relativeMaxError(s.forward.lse(), forwardRef[1]));
        if (s.backward != null) {
          Tensor[] backwardRef = LocalReference.backward(reference, s.backwardInput, allocator);
          try {
            errors.put("dq", TensorCompare.relativeMaxError(s.backward.dq(), backwardRef[0]));
            errors.put("dk", TensorCompare.relativeMaxError(s.backward.dk(), backwardRef[1]));
            errors.put("dv", TensorCompare.relativeMaxError(s.backward.dv(), backwardRef[2]));
          } finally {
            for (Tensor t : backwardRef) {
              t.close();
            }
          }
        }
        boolean passed = errors.values().stream().allMatch(e -> e <= tolerance);
        results.add(new Result(step, rank, s.layer, errors, passed));
      }
    } finally {
      forwardRef[0].close();
      forwardRef[1].close();
    }
    return results;
  }
}
