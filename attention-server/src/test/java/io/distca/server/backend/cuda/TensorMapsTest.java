package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.tensor.DType;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** The JNI shim loads from the jar wherever the build had a C compiler; the GPU tests use it for real. */
class TensorMapsTest {

  @Test
  void theLibraryLoadsAndOnlyAMissingDriverCanStopIt() {
    Assumptions.assumeTrue(TensorMaps.class.getClassLoader().getResource(TensorMaps.LIBRARY_RESOURCE) != null,
        "built without the JNI shim (no C compiler or -Ddistca.jni.skip)");
    String reason = TensorMaps.unavailableReason();
    // Here (no NVIDIA driver) the library itself must load and report the driver; on a GPU host, null.
    assertTrue(reason == null || reason.contains("cuTensorMapEncodeTiled"), String.valueOf(reason));
  }

  @Test
  void badShapesAreRefusedByName() {
    IllegalArgumentException int32 = assertThrows(IllegalArgumentException.class,
        () -> TensorMaps.encode(DType.INT32, 0x1000, 10, 2, 128, 128));
    assertTrue(int32.getMessage().contains("bf16, fp16 or fp32"), int32.getMessage());
    assertThrows(IllegalArgumentException.class, () -> TensorMaps.encode(DType.FP32, 0x1000, 4, 2, 48, 64),
        "fp32 boxes are 32 columns wide");
    assertThrows(IllegalArgumentException.class, () -> TensorMaps.encode(DType.BF16, 0x1000, 0, 2, 128, 128), "no rows");
    assertThrows(IllegalArgumentException.class, () -> TensorMaps.encode(DType.BF16, 0x1000, 4, 2, 96, 128), "96 columns");
    assertThrows(IllegalArgumentException.class, () -> TensorMaps.encode(DType.BF16, 0x1000, 4, 2, 128, 512), "box rows");
  }

  @Test
  void withoutTheDriverEncodingSaysWhy() {
    String reason = TensorMaps.unavailableReason();
    Assumptions.assumeTrue(reason != null, "a driver is here: the GPU tests encode real maps");
    IllegalStateException e = assertThrows(IllegalStateException.class,
        () -> TensorMaps.encode(DType.BF16, 0x1000, 4, 2, 128, 64));
    assertEquals("TMA tensor maps unavailable: " + reason, e.getMessage());
  }
}
