package io.distca.dispatcher.workload;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DocLengthDistributionTest {

  @Test
  void pretrainLoadsFromTheClasspathWithItsDocumentedStatistics() {
    DocLengthDistribution pretrain = DocLengthDistribution.pretrain();
    SplittableRandom rng = new SplittableRandom(1);
    double sum = 0;
    int max = 0;
    int samples = 200_000;
    for (int i = 0; i < samples; i++) {
      int length = pretrain.sample(rng);
      sum += length;
      max = Math.max(max, length);
    }
    assertEquals(3962, sum / samples, 80, "mean document length");
    assertTrue(max <= 124_913);
  }

  @Test
  void ranksAreFilledExactlyAndReproduciblyForASeed() {
    for (String name : List.of("pretrain", "pretrain-upsampled", "longtail", "fixed:3000", "uniform:1:9k",
        "lognormal:4k:1.2:64k", "longtail:0.1:64k:340k")) {
      DocLengthDistribution distribution = DocLengthDistribution.byName(name);
      List<int[]> ranks = distribution.sampleRanks(4, 64 * 1024, 42);
      for (int[] lengths : ranks) {
        assertEquals(64 * 1024, IntStream.of(lengths).asLongStream().sum(), name);
        assertTrue(IntStream.of(lengths).allMatch(l -> l >= 1), name);
      }
      List<int[]> again = distribution.sampleRanks(4, 64 * 1024, 42);
      for (int r = 0; r < 4; r++) {
        assertArrayEquals(ranks.get(r), again.get(r), name);
      }
    }
  }

  @Test
  void upsamplingDoublesTheShareOfLongDocuments() {
    DocLengthDistribution plain = DocLengthDistribution.pretrain();
    DocLengthDistribution upsampled = plain.withLongDocumentUpsampling();
    double plainShare = longShare(plain);
    double upsampledShare = longShare(upsampled);
    // p' = 2p / (2p + (1 - p)) for p = 0.0201
    double expected = 2 * plainShare / (2 * plainShare + 1 - plainShare);
    assertEquals(0.0201, plainShare, 0.002);
    assertEquals(expected, upsampledShare, 0.003);
  }

  private static double longShare(DocLengthDistribution distribution) {
    SplittableRandom rng = new SplittableRandom(9);
    int n = 200_000;
    int longOnes = 0;
    for (int i = 0; i < n; i++) {
      longOnes += distribution.sample(rng) >= 10_000 ? 1 : 0;
    }
    return (double) longOnes / n;
  }

  @Test
  void longTailMixReachesItsMaximumButNeverExceedsIt() {
    DocLengthDistribution longTail = DocLengthDistribution.longTail();
    SplittableRandom rng = new SplittableRandom(5);
    int max = 0;
    for (int i = 0; i < 100_000; i++) {
      max = Math.max(max, longTail.sample(rng));
    }
    assertTrue(max > 300 * 1024 && max <= DocLengthDistribution.LONG_TAIL_MAX_TOKENS, "max " + max);
  }

  @Test
  void jsonFilesLoadAndBadOnesAreTypedErrors(@TempDir Path dir) throws IOException {
    Path good = dir.resolve("lengths.json");
    Files.writeString(good, "[100, 200, 300]");
    DocLengthDistribution fromFile = DocLengthDistribution.fromJsonFile(good);
    SplittableRandom rng = new SplittableRandom(3);
    for (int i = 0; i < 100; i++) {
      int length = fromFile.sample(rng);
      assertTrue(length == 100 || length == 200 || length == 300);
    }
    Files.writeString(dir.resolve("bad.json"), "{\"not\": \"an array\"}");
    Files.writeString(dir.resolve("zero.json"), "[5, 0]");
    assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.fromJsonFile(dir.resolve("bad.json")));
    InvalidWorkloadException zero =
        assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.fromJsonFile(dir.resolve("zero.json")));
    assertTrue(zero.getMessage().contains("index 1"), zero.getMessage());
    InvalidWorkloadException missing =
        assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.fromJsonFile(dir.resolve("nope.json")));
    assertTrue(missing.getMessage().contains("does not exist"), missing.getMessage());
  }

  @Test
  void badSpecificationsAreTypedErrors() {
    assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.byName("zipf"));
    assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.byName("fixed"));
    assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.byName("uniform:10:5"));
    assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.byName("fixed:abc"));
    assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.fixed(4).fillRank(0, new SplittableRandom()));
    assertThrows(InvalidWorkloadException.class, () -> DocLengthDistribution.pretrain().withUpsampling(10_000, 0.5));
  }
}
