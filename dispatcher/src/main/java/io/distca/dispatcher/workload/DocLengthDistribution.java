package io.distca.dispatcher.workload;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

/**
 * Where document lengths come from: the pretrain distribution shipped with the project, any JSON
 * array of lengths, or a synthetic shape. {@link #sampleRanks} packs sampled documents into fixed
 * token budgets per trainer rank, reproducibly for a seed.
 */
public abstract class DocLengthDistribution {

  /** Classpath location of the shipped pretrain distribution (see README.md beside it). */
  public static final String PRETRAIN_RESOURCE = "/io/distca/workloads/pretrain-doc-lengths.json";
  /** The paper upsamples documents of at least this many tokens... */
  public static final int LONG_DOCUMENT_TOKENS = 10_000;
  /** ...by this factor, to stress long context. */
  public static final double LONG_DOCUMENT_UPSAMPLING = 2.0;
  /** Longest document of the long-tail mixes. */
  public static final int LONG_TAIL_MAX_TOKENS = 340 * 1024;

  private final String name;

  protected DocLengthDistribution(String name) {
    this.name = name;
  }

  /** One document length, at least 1 token. */
  public abstract int sample(RandomGenerator rng);

  public final String name() {
    return name;
  }

  @Override
  public String toString() {
    return name;
  }

  /**
   * Documents that fill exactly {@code tokenBudget} tokens, in sampling order. The last document is
   * cut to fit (as a packer cuts the document that overflows a context window), and so is any
   * document longer than the whole budget.
   */
  public int[] fillRank(long tokenBudget, RandomGenerator rng) {
    if (tokenBudget < 1 || tokenBudget > Integer.MAX_VALUE) {
      throw new InvalidWorkloadException("token budget per rank must be in [1, " + Integer.MAX_VALUE + "], got " + tokenBudget);
    }
    int[] lengths = new int[16];
    int count = 0;
    long left = tokenBudget;
    while (left > 0) {
      int length = (int) Math.min(left, sample(rng));
      if (count == lengths.length) {
        lengths = java.util.Arrays.copyOf(lengths, count * 2);
      }
      lengths[count++] = length;
      left -= length;
    }
    return java.util.Arrays.copyOf(lengths, count);
  }

  /** {@code ranks} independent token-budget fills, the same for the same seed. */
  public List<int[]> sampleRanks(int ranks, long tokensPerRank, long seed) {
    if (ranks < 1) {
      throw new InvalidWorkloadException("ranks must be >= 1, got " + ranks);
    }
    SplittableRandom root = new SplittableRandom(seed);
    List<int[]> perRank = new ArrayList<>(ranks);
    for (int r = 0; r < ranks; r++) {
      perRank.add(fillRank(tokensPerRank, root.split()));
    }
    return perRank;
  }

  /**
   * This distribution with documents of at least {@code thresholdTokens} drawn {@code factor} times
   * as often (rejection sampling: shorter documents are kept with probability 1 / factor).
   */
  public DocLengthDistribution withUpsampling(int thresholdTokens, double factor) {
    if (thresholdTokens < 1) {
      throw new InvalidWorkloadException("upsampling threshold must be >= 1 token, got " + thresholdTokens);
    }
    if (!(factor >= 1) || Double.isInfinite(factor)) {
      throw new InvalidWorkloadException("upsampling factor must be finite and >= 1, got " + factor);
    }
    DocLengthDistribution base = this;
    double keepShort = 1.0 / factor;
    return new DocLengthDistribution(name + "-upsampled") {
      @Override
      public int sample(RandomGenerator rng) {
        while (true) {
          int length = base.sample(rng);
          if (length >= thresholdTokens || rng.nextDouble() < keepShort) {
            return length;
          }
        }
      }
    };
  }

  /** The paper's setting: documents of 10K tokens or more upsampled 2x. */
  public DocLengthDistribution withLongDocumentUpsampling() {
    return withUpsampling(LONG_DOCUMENT_TOKENS, LONG_DOCUMENT_UPSAMPLING);
  }

  // ---- sources -------------------------------------------------------------------------------

  /** The pretrain distribution (99,519 documents) shipped on the classpath. */
  public static DocLengthDistribution pretrain() {
    return PretrainHolder.PRETRAIN;
  }

  private static final class PretrainHolder {
    static final DocLengthDistribution PRETRAIN = loadPretrain();

    private static DocLengthDistribution loadPretrain() {
      try (InputStream in = DocLengthDistribution.class.getResourceAsStream(PRETRAIN_RESOURCE)) {
        if (in == null) {
          throw new IllegalStateException("classpath resource " + PRETRAIN_RESOURCE + " is missing from the build");
        }
        return empirical("pretrain", readLengths(in, PRETRAIN_RESOURCE));
      } catch (IOException e) {
        throw new IllegalStateException("cannot read " + PRETRAIN_RESOURCE, e);
      }
    }
  }

  /** Samples uniformly from {@code lengths} (each entry one document; repeats weight a length). */
  public static DocLengthDistribution empirical(String name, int[] lengths) {
    if (lengths.length == 0) {
      throw new InvalidWorkloadException(name + ": needs at least one document length");
    }
    for (int i = 0; i < lengths.length; i++) {
      if (lengths[i] < 1) {
        throw new InvalidWorkloadException(name + ": document length at index " + i + " must be >= 1, got " + lengths[i]);
      }
    }
    int[] copy = lengths.clone();
    return new DocLengthDistribution(name) {
      @Override
      public int sample(RandomGenerator rng) {
        return copy[rng.nextInt(copy.length)];
      }
    };
  }

  /** A JSON array of document lengths in a file anywhere (a tool's argument, never a project file). */
  public static DocLengthDistribution fromJsonFile(Path file) {
    try (InputStream in = Files.newInputStream(file)) {
      return empirical(file.getFileName().toString(), readLengths(in, file.toString()));
    } catch (NoSuchFileException e) {
      throw new InvalidWorkloadException("document-length file " + file + " does not exist", e);
    } catch (IOException e) {
      throw new InvalidWorkloadException("cannot read document-length file " + file + ": " + e.getMessage(), e);
    }
  }

  /** Reads a JSON array of integers. */
  public static int[] readLengths(InputStream in, String source) throws IOException {
    try {
      int[] lengths = new ObjectMapper().readValue(in, int[].class);
      if (lengths == null) {
        throw new InvalidWorkloadException(source + ": expected a JSON array of document lengths, got null");
      }
      return lengths;
    } catch (JsonProcessingException e) {
      throw new InvalidWorkloadException(
          source + ": expected a JSON array of integer document lengths: " + e.getOriginalMessage(), e);
    }
  }

  public static DocLengthDistribution fixed(int length) {
    requirePositive("fixed length", length);
    return new DocLengthDistribution("fixed:" + length) {
      @Override
      public int sample(RandomGenerator rng) {
        return length;
      }
    };
  }

  public static DocLengthDistribution uniform(int min, int max) {
    requirePositive("uniform min", min);
    if (max < min) {
      throw new InvalidWorkloadException("uniform max (" + max + ") must be >= min (" + min + ")");
    }
    return new DocLengthDistribution("uniform:" + min + ":" + max) {
      @Override
      public int sample(RandomGenerator rng) {
        return min + rng.nextInt(max - min + 1);
      }
    };
  }

  /** exp(N(ln median, sigma^2)), rounded, clamped to [1, max]. */
  public static DocLengthDistribution logNormal(int median, double sigma, int max) {
    requirePositive("lognormal median", median);
    requirePositive("lognormal max", max);
    if (!(sigma >= 0) || Double.isInfinite(sigma)) {
      throw new InvalidWorkloadException("lognormal sigma must be finite and >= 0, got " + sigma);
    }
    double mu = Math.log(median);
    return new DocLengthDistribution("lognormal:" + median + ":" + sigma + ":" + max) {
      @Override
      public int sample(RandomGenerator rng) {
        double length = Math.exp(mu + sigma * rng.nextGaussian());
        return (int) Math.max(1, Math.min(max, Math.round(length)));
      }
    };
  }

  /**
   * A long-tail mix: with probability {@code longFraction} a document log-uniform in
   * {@code [minLong, maxLong]}, else one drawn from {@code base}.
   */
  public static DocLengthDistribution longTailMix(
      DocLengthDistribution base, double longFraction, int minLong, int maxLong) {
    if (!(longFraction >= 0 && longFraction <= 1)) {
      throw new InvalidWorkloadException("long-tail fraction must be in [0, 1], got " + longFraction);
    }
    requirePositive("long-tail min", minLong);
    if (maxLong < minLong) {
      throw new InvalidWorkloadException("long-tail max (" + maxLong + ") must be >= min (" + minLong + ")");
    }
    double logMin = Math.log(minLong);
    double logSpan = Math.log(maxLong) - logMin;
    String name = "longtail:" + longFraction + ":" + minLong + ":" + maxLong + (base == pretrain() ? "" : ":" + base.name());
    return new DocLengthDistribution(name) {
      @Override
      public int sample(RandomGenerator rng) {
        if (rng.nextDouble() < longFraction) {
          return (int) Math.min(maxLong, Math.round(Math.exp(logMin + logSpan * rng.nextDouble())));
        }
        return base.sample(rng);
      }
    };
  }

  /** The default long-tail mix: pretrain documents plus 2% log-uniform in [32K, 340K] tokens. */
  public static DocLengthDistribution longTail() {
    return longTailMix(pretrain(), 0.02, 32 * 1024, LONG_TAIL_MAX_TOKENS);
  }

  /**
   * A distribution by name: {@code pretrain}, {@code pretrain-upsampled}, {@code longtail},
   * {@code longtail:FRACTION:MIN:MAX}, {@code fixed:N}, {@code uniform:MIN:MAX},
   * {@code lognormal:MEDIAN:SIGMA:MAX}. Token counts accept a {@code k} suffix (x1024).
   */
  public static DocLengthDistribution byName(String spec) {
    if (spec == null || spec.isBlank()) {
      throw new InvalidWorkloadException("distribution name must not be empty");
    }
    String[] parts = spec.trim().toLowerCase(Locale.ROOT).split(":");
    try {
      switch (parts[0]) {
        case "pretrain":
          expectParts(spec, parts, 1);
          return pretrain();
        case "pretrain-upsampled":
          expectParts(spec, parts, 1);
          return pretrain().withLongDocumentUpsampling();
        case "longtail":
          if (parts.length == 1) {
            return longTail();
          }
          expectParts(spec, parts, 4);
          return longTailMix(pretrain(), Double.parseDouble(parts[1]), tokens(parts[2]), tokens(parts[3]));
        case "fixed":
          expectParts(spec, parts, 2);
          return fixed(tokens(parts[1]));
        case "uniform":
          expectParts(spec, parts, 3);
          return uniform(tokens(parts[1]), tokens(parts[2]));
        case "lognormal":
          expectParts(spec, parts, 4);
          return logNormal(tokens(parts[1]), Double.parseDouble(parts[2]), tokens(parts[3]));
        default:
          throw new InvalidWorkloadException("unknown distribution '" + spec + "' (known: " + KNOWN + ")");
      }
    } catch (NumberFormatException e) {
      throw new InvalidWorkloadException("distribution '" + spec + "': not a number: " + e.getMessage(), e);
    }
  }

  public static final String KNOWN =
      "pretrain, pretrain-upsampled, longtail, longtail:FRACTION:MIN:MAX, fixed:N, uniform:MIN:MAX, lognormal:MEDIAN:SIGMA:MAX";

  /** Whether {@code spec} names a distribution {@link #byName} knows (its first part). */
  public static boolean isKnownName(String spec) {
    String head = spec.trim().toLowerCase(Locale.ROOT).split(":")[0];
    return List.of("pretrain", "pretrain-upsampled", "longtail", "fixed", "uniform", "lognormal").contains(head);
  }

  /** A token count such as {@code 4096} or {@code 512k} (x1024). */
  public static int tokens(String text) {
    String t = text.trim().toLowerCase(Locale.ROOT);
    long multiplier = 1;
    if (t.endsWith("k")) {
      multiplier = 1024;
      t = t.substring(0, t.length() - 1);
    }
    long value = Long.parseLong(t) * multiplier;
    if (value > Integer.MAX_VALUE || value < Integer.MIN_VALUE) {
      throw new InvalidWorkloadException("token count " + text + " is out of range");
    }
    return (int) value;
  }

  private static void expectParts(String spec, String[] parts, int count) {
    if (parts.length != count) {
      throw new InvalidWorkloadException(
          "distribution '" + spec + "' takes " + (count - 1) + " parameter(s) after '" + parts[0] + "' (known: " + KNOWN + ")");
    }
  }

  private static void requirePositive(String what, int value) {
    if (value < 1) {
      throw new InvalidWorkloadException(what + " must be >= 1, got " + value);
    }
  }
}
