package io.distca.dispatcher.plan;

/**
 * No plan meets the per-server byte budgets even at the largest tolerance the options allow. The
 * message names the budget, the tolerance reached and the document that could not be placed.
 */
public final class PlanInfeasibleException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public PlanInfeasibleException(String message) {
    super(message);
  }
}
