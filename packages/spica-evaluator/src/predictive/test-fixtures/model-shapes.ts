import { shapeOf } from "../model-config.ts";

// config.json fields as published on the Hugging Face hub (copies named in predictive-memory.md §2.1).
export const llama31_8b = shapeOf({
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  hidden_size: 4096,
  intermediate_size: 14336,
  vocab_size: 128256,
  torch_dtype: "bfloat16",
});
export const qwen25_7b = shapeOf({
  num_hidden_layers: 28,
  num_attention_heads: 28,
  num_key_value_heads: 4,
  hidden_size: 3584,
  intermediate_size: 18944,
  vocab_size: 152064,
  torch_dtype: "bfloat16",
});
export const mistral7b = shapeOf({
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  hidden_size: 4096,
  intermediate_size: 14336,
  vocab_size: 32768,
  torch_dtype: "bfloat16",
});
export const qwen25_05b = shapeOf({
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  hidden_size: 896,
  intermediate_size: 4864,
  vocab_size: 151936,
  torch_dtype: "bfloat16",
  tie_word_embeddings: true,
});
export const qwen25_15b = shapeOf({
  num_hidden_layers: 28,
  num_attention_heads: 12,
  num_key_value_heads: 2,
  hidden_size: 1536,
  intermediate_size: 8960,
  vocab_size: 151936,
  torch_dtype: "bfloat16",
  tie_word_embeddings: true,
});
export const deepseekV2Lite = shapeOf({
  num_hidden_layers: 27,
  num_attention_heads: 16,
  hidden_size: 2048,
  intermediate_size: 10944,
  vocab_size: 102400,
  kv_lora_rank: 512,
  qk_rope_head_dim: 64,
  torch_dtype: "bfloat16",
});
