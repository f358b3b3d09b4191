package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The step result's checks; the step itself runs against real clusters in EndToEndTest and the deploy tests. */
class CheckedStepTest {
  private static CheckedStep.Result result(double... errors) {
    return new CheckedStep.Result(errors, new int[] {0, 1, 2, 1, 0}, 0.1, 0.2, 1000, 3, 2, 1.01);
  }

  @Test
  void requireWithinNamesTheFirstResultAboveItsBound() {
    result(5e-3, 1e-7, 1e-2, 1e-2, 1e-2).requireWithin(1e-2, 1e-3, 2e-2); // the last bound covers dQ, dK, dV
    AssertionError e = assertThrows(AssertionError.class,
        () -> result(5e-3, 1e-7, 3e-2, 1e-2, 1e-2).requireWithin(1e-2, 1e-3, 2e-2));
    assertTrue(e.getMessage().startsWith("dQ of rank 2"), e.getMessage());
    AssertionError lse = assertThrows(AssertionError.class,
        () -> result(5e-3, 2e-3, 0, 0, 0).requireWithin(1e-2, 1e-3, 2e-2));
    assertTrue(lse.getMessage().startsWith("LSE of rank 1"), lse.getMessage());
    assertThrows(AssertionError.class, () -> result(Double.POSITIVE_INFINITY, 0, 0, 0, 0).requireWithin(1));
  }

  @Test
  void maxErrorIsTheLargestOfTheFive() {
    assertEquals(0.03, result(5e-3, 1e-7, 0.03, 1e-2, 0).maxError());
  }
}
