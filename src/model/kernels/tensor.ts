// The tensors kernels multiply: ggml element types and a weight matrix held in its file layout.
// Defined here, below the model, so the kernels import nothing above them (model/weights.ts
// builds the model's weights out of these).

/** Tensor element types Stepwise reads. Names follow ggml's type names. */
export type DType =
  | 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q6_k'
  | 'q4_1' | 'q5_0' | 'q5_1' | 'q2_k' | 'q3_k' | 'q5_k' | 'iq4_nl' | 'iq4_xs';

/**
 * A 2-D weight matrix W with `rows` output features and `cols` input features, row-major:
 * row n holds the `cols` weights that produce output feature n (GGUF ne[0] = cols, ne[1] = rows).
 * `data` holds the raw bytes in ggml's layout for `dtype` (for f32: rows*cols little-endian floats;
 * for block types: each row is cols/blockSize consecutive blocks).
 */
export interface WeightTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly rows: number;
  readonly cols: number;
  readonly data: Uint8Array;
}
