package io.distca.dispatcher.plan;

/**
 * How {@link DistcaPlanner} cuts a causal document's query range when part of it must go to another
 * server. Both move exactly the FLOPs asked for (to one query row); they differ in the K/V they ship.
 */
public enum SplitStyle {
  /**
   * One cut per move: a piece is a contiguous query range {@code [c, e)} with its K/V prefix
   * {@code [0, e)}. The extra K/V a split costs is the cut position, so this style ships the least.
   */
  PREFIX,
  /**
   * The paper's symmetric cut: a move takes {@code h} rows from the head and {@code h} from the tail
   * of a range {@code [a, b)}, whose causal pairs are exactly {@code h * (a + b + 1)}, linear in
   * {@code h}. Query tokens per server then follow FLOPs, at the price of shipping the tail's whole
   * K/V prefix. Non-causal documents are always cut as {@link #PREFIX} (their K/V is the whole
   * document either way).
   */
  HEAD_TAIL
}
