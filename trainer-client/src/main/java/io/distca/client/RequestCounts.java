package io.distca.client;

/**
 * What a client's requests came to so far. Every attempt that started ends as exactly one of
 * answered or failed (a failed attempt may be retried as a new attempt), so once no call is in
 * flight {@code requestsStarted == requestsAnswered + requestsFailed}, and likewise for tasks.
 */
public record RequestCounts(
    long requestsStarted, long requestsAnswered, long requestsFailed,
    long tasksSent, long tasksAnswered, long tasksFailed) {

  /** Attempts still waiting for their outcome. */
  public long requestsInFlight() {
    return requestsStarted - requestsAnswered - requestsFailed;
  }
}
