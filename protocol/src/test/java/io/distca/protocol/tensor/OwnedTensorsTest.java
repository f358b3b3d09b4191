package io.distca.protocol.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

class OwnedTensorsTest {

  @Test
  void closingReleasesWhatWasAllocatedOrAdoptedOnceAndOnlyOnce() {
    try (BufferAllocator root = new RootAllocator()) {
      OwnedTensors owned = new OwnedTensors(root);
      Tensor a = owned.allocate(DType.BF16, 4, 2, 8);
      assertEquals(0f, a.getFloat(a.numel() - 1), "zero-filled");
      Tensor b = owned.adopt(Tensor.allocate(root, DType.FP32, 3));
      Tensor kept = Tensor.allocate(root, DType.FP32, 5);
      assertEquals(3, b.numel());
      owned.close();
      assertTrue(root.getAllocatedMemory() > 0, "a tensor it does not own stays");
      kept.close();
      assertEquals(0, root.getAllocatedMemory(), "everything it owned was released");
      owned.close(); // a second close releases nothing twice
      assertEquals(0, root.getAllocatedMemory());
    }
  }
}
