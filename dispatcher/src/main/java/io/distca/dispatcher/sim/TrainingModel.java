package io.distca.dispatcher.sim;

import io.distca.protocol.model.ModelSpec;
import java.util.Locale;

/**
 * A transformer's shapes beyond attention: what its linear parts (QKV and output projections,
 * SwiGLU MLP, LM head) cost per token.
 *
 * @param attention heads, head size, layers and dtype
 * @param hiddenSize model width
 * @param ffnHiddenSize MLP inner width (three matrices: gate, up, down)
 * @param vocabSize LM head width
 */
public record TrainingModel(ModelSpec attention, int hiddenSize, int ffnHiddenSize, int vocabSize) {

  /** Llama-3-8B: 32 layers, width 4096, MLP 14336, GQA 32/8 heads of 128, vocabulary 128256. */
  public static final TrainingModel LLAMA_3_8B = new TrainingModel(ModelSpec.LLAMA_3_8B, 4096, 14336, 128_256);
  /** (Code)Llama-34B: 48 layers, width 8192, MLP 22016, GQA 64/8 heads of 128, vocabulary 32000. */
  public static final TrainingModel LLAMA_34B = new TrainingModel(ModelSpec.LLAMA_34B, 8192, 22016, 32_000);

  public static TrainingModel byName(String name) {
    ModelSpec spec = ModelSpec.byName(name);
    if (spec == ModelSpec.LLAMA_3_8B) {
      return LLAMA_3_8B;
    }
    if (spec == ModelSpec.LLAMA_34B) {
      return LLAMA_34B;
    }
    throw new IllegalArgumentException(
        "model '" + name.toLowerCase(Locale.ROOT) + "' has no linear-layer shapes here (known: llama-8b, llama-34b)");
  }

  public String name() {
    return attention.name();
  }

  /** Weights of one layer's linear parts. */
  public long linearParamsPerLayer() {
    long qWidth = (long) attention.headsQ() * attention.headDim();
    long kvWidth = (long) attention.headsKv() * attention.headDim();
    return hiddenSize * qWidth + 2 * hiddenSize * kvWidth + qWidth * hiddenSize + 3L * hiddenSize * ffnHiddenSize;
  }

  /** Forward FLOPs of one layer's linear parts per token (a multiply-add is 2 FLOPs). */
  public double linearForwardFlopsPerTokenPerLayer() {
    return 2.0 * linearParamsPerLayer();
  }

  /** Forward FLOPs of the LM head per token. */
  public double headForwardFlopsPerToken() {
    return 2.0 * hiddenSize * vocabSize;
  }
}
