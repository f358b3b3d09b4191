package io.distca.dispatcher.tools;

import io.distca.dispatcher.workload.DocLengthDistribution;
import io.distca.dispatcher.workload.InvalidWorkloadException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Option;

/** Where the tools' documents come from: {@code --docs FILE|NAME}, optional upsampling, seed. */
final class WorkloadSource {
  @Option(names = "--docs", paramLabel = "FILE|NAME", defaultValue = "pretrain",
      description = "JSON array of document lengths, or a distribution: "
          + DocLengthDistribution.KNOWN + " (default: ${DEFAULT-VALUE})")
  String docs;

  @Option(names = "--upsample-long", description = "draw documents of >= 10K tokens 2x as often, as the paper does")
  boolean upsampleLong;

  @Option(names = "--seed", defaultValue = "1", description = "sampling seed (default: ${DEFAULT-VALUE})")
  long seed;

  /** An existing file is read as a JSON array; anything else must be a distribution name. */
  boolean isFile() {
    if (Files.isRegularFile(Path.of(docs))) {
      return true;
    }
    if (!DocLengthDistribution.isKnownName(docs)) {
      throw new InvalidWorkloadException(
          "--docs '" + docs + "' is neither a file nor a distribution (known: " + DocLengthDistribution.KNOWN + ")");
    }
    return false;
  }

  DocLengthDistribution distribution() {
    DocLengthDistribution distribution = isFile()
        ? DocLengthDistribution.fromJsonFile(Path.of(docs))
        : DocLengthDistribution.byName(docs);
    return upsampleLong ? distribution.withLongDocumentUpsampling() : distribution;
  }

  List<int[]> sample(int ranks, long tokensPerRank) {
    return distribution().sampleRanks(ranks, tokensPerRank, seed);
  }

  /**
   * The file's documents exactly as listed, dealt in order onto {@code ranks} ranks of about equal
   * tokens (the file is one step's documents, not a distribution to sample).
   */
  List<int[]> literal(int ranks) {
    int[] lengths;
    try (var in = Files.newInputStream(Path.of(docs))) {
      lengths = DocLengthDistribution.readLengths(in, docs);
    } catch (java.nio.file.NoSuchFileException e) {
      throw new InvalidWorkloadException("document-length file " + docs + " does not exist", e);
    } catch (java.io.IOException e) {
      throw new InvalidWorkloadException("cannot read document-length file " + docs + ": " + e.getMessage(), e);
    }
    long total = 0;
    for (int i = 0; i < lengths.length; i++) {
      if (lengths[i] < 0) {
        throw new InvalidWorkloadException(docs + ": document length at index " + i + " must be >= 0, got " + lengths[i]);
      }
      total += lengths[i];
    }
    List<int[]> perRank = new ArrayList<>(ranks);
    int next = 0;
    long dealt = 0;
    for (int r = 0; r < ranks; r++) {
      long until = total * (r + 1) / ranks;
      int from = next;
      while (next < lengths.length && (r == ranks - 1 || dealt + lengths[next] / 2 < until)) {
        dealt += lengths[next++];
      }
      perRank.add(java.util.Arrays.copyOfRange(lengths, from, next));
    }
    return perRank;
  }

  static long parseTokens(String text) {
    try {
      return DocLengthDistribution.tokens(text);
    } catch (NumberFormatException e) {
      throw new InvalidWorkloadException("not a token count: '" + text + "' (e.g. 4096 or 512k)");
    }
  }
}
