package io.distca.dispatcher.plan;

/** A plan input or option that cannot be planned as given; the message names the offending field. */
public final class InvalidPlanInputException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  public InvalidPlanInputException(String message) {
    super(message);
  }
}
