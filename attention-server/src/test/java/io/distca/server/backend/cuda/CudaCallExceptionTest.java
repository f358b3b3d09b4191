package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Which driver errors mean the GPU context is lost for good (the backend then fails every later batch). */
class CudaCallExceptionTest {

  private static CudaCallException failed(int code, String name) {
    return new CudaCallException("cuEventSynchronize", code, name, "waiting for a batch", null);
  }

  @Test
  void faultsThatPoisonTheContextAreToldApartFromOrdinaryFailures() {
    for (int code : new int[] {700, 702, 710, 714, 715, 716, 717, 718, 719, 214}) {
      assertTrue(failed(code, "CUDA_ERROR_" + code).contextLost(), "code " + code);
    }
    // out of memory, an invalid value, a missing kernel, an oversized cooperative launch: the context lives on
    for (int code : new int[] {2, 1, 500, 720, -1}) {
      assertFalse(failed(code, "CUDA_ERROR_" + code).contextLost(), "code " + code);
    }
  }

  @Test
  void theMessageNamesTheCallTheErrorAndWhatTheBackendWasDoing() {
    CudaCallException e = failed(700, "CUDA_ERROR_ILLEGAL_ADDRESS");
    assertEquals("cuEventSynchronize failed with CUDA_ERROR_ILLEGAL_ADDRESS (700) while waiting for a batch", e.getMessage());
  }
}
