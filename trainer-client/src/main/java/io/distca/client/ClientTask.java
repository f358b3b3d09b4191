package io.distca.client;

/**
 * A CA-task as the client tracks it: query rows [qStart, qEnd) of document {@code doc} with keys
 * [kvStart, kvEnd) of the same document, placed on plan server {@code server}. Ids are unique within
 * a (job, step) and let the client drop duplicate results.
 */
record ClientTask(long id, int doc, int qStart, int qEnd, int kvStart, int kvEnd, int server) {
  int qLen() {
    return qEnd - qStart;
  }

  int kvLen() {
    return kvEnd - kvStart;
  }

  /** Document position of the first query minus that of the first key (see CostModel). */
  int diagonal(boolean causal) {
    return causal ? qStart - kvStart : kvLen() - qLen();
  }
}
