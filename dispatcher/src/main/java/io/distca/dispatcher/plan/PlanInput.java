package io.distca.dispatcher.plan;

import io.distca.protocol.model.AttentionShape;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Everything one step's plan depends on: the attention shape shared by all ranks, the masking, the
 * document lengths of every trainer rank (packing order; a task's {@code doc} indexes this array),
 * the live servers and the planner options. The constructor validates all of it and keeps
 * unmodifiable copies of the lists (the arrays are not copied: callers must not mutate them while a
 * plan is being computed).
 */
public record PlanInput(
    AttentionShape shape,
    boolean causal,
    List<int[]> docLengthsPerRank,
    List<ServerCapacity> servers,
    PlanOptions options) {

  public PlanInput {
    if (shape == null) {
      throw new InvalidPlanInputException("shape must not be null");
    }
    String shapeProblem = shape.problem();
    if (shapeProblem != null) {
      throw new InvalidPlanInputException("shape: " + shapeProblem);
    }
    if (docLengthsPerRank == null || docLengthsPerRank.isEmpty()) {
      throw new InvalidPlanInputException("docLengthsPerRank must list at least one rank");
    }
    for (int rank = 0; rank < docLengthsPerRank.size(); rank++) {
      int[] lengths = docLengthsPerRank.get(rank);
      if (lengths == null) {
        throw new InvalidPlanInputException("docLengthsPerRank[" + rank + "] is null");
      }
      for (int doc = 0; doc < lengths.length; doc++) {
        if (lengths[doc] < 0) {
          throw new InvalidPlanInputException(
              "rank " + rank + " doc " + doc + ": length must be >= 0, got " + lengths[doc]);
        }
      }
    }
    if (servers == null || servers.isEmpty()) {
      throw new InvalidPlanInputException("servers must list at least one server");
    }
    Set<String> ids = new HashSet<>();
    for (int i = 0; i < servers.size(); i++) {
      ServerCapacity server = servers.get(i);
      if (server == null) {
        throw new InvalidPlanInputException("servers[" + i + "] is null");
      }
      if (!ids.add(server.serverId())) {
        throw new InvalidPlanInputException("server id '" + server.serverId() + "' appears twice");
      }
    }
    if (options == null) {
      throw new InvalidPlanInputException("options must not be null");
    }
    docLengthsPerRank = List.copyOf(docLengthsPerRank);
    servers = List.copyOf(servers);
  }

  public PlanInput(AttentionShape shape, boolean causal, List<int[]> docLengthsPerRank, List<ServerCapacity> servers) {
    this(shape, causal, docLengthsPerRank, servers, PlanOptions.defaults());
  }

  public PlanInput withOptions(PlanOptions newOptions) {
    return new PlanInput(shape, causal, docLengthsPerRank, servers, newOptions);
  }

  public int ranks() {
    return docLengthsPerRank.size();
  }

  public int serverCount() {
    return servers.size();
  }

  public long totalTokens() {
    long total = 0;
    for (int[] lengths : docLengthsPerRank) {
      for (int length : lengths) {
        total += length;
      }
    }
    return total;
  }
}
