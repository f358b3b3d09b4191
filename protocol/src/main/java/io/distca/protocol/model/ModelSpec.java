package io.distca.protocol.model;

import io.distca.protocol.tensor.DType;
import java.util.Locale;

/** Attention shapes of the models the tools know by name. */
public record ModelSpec(String name, int layers, int headsQ, int headsKv, int headDim, DType dtype) {

  public static final ModelSpec LLAMA_3_8B = new ModelSpec("llama-8b", 32, 32, 8, 128, DType.BF16);
  public static final ModelSpec LLAMA_34B = new ModelSpec("llama-34b", 48, 64, 8, 128, DType.BF16);
  public static final ModelSpec LLAMA_3_70B = new ModelSpec("llama-70b", 80, 64, 8, 128, DType.BF16);

  public static ModelSpec byName(String name) {
    switch (name.toLowerCase(Locale.ROOT)) {
      case "llama-8b":
      case "llama-3-8b":
      case "llama3-8b":
        return LLAMA_3_8B;
      case "llama-34b":
      case "codellama-34b":
        return LLAMA_34B;
      case "llama-70b":
      case "llama-3-70b":
        return LLAMA_3_70B;
      default:
        throw new IllegalArgumentException("unknown model '" + name + "' (known: llama-8b, llama-34b, llama-70b)");
    }
  }

  public AttentionShape attentionShape() {
    return new AttentionShape(headsQ, headsKv, headDim, dtype, AttentionShape.defaultScale(headDim));
  }
}
