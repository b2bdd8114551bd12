// `stepwise make-model`: writes a deterministic random-weight GGUF model (see src/model/make-model.ts).
import { parseCommandFlags } from './command-flags.js';
import { isWeightFormat, makeModel, PRESETS, QUANT_MIXES, type ModelPreset } from '../model/make-model.js';
import { ARCHITECTURES, isArchitecture } from '../model/families.js';
import { DTYPES } from '../model/kernels/quant.js';
import { ModelFileError } from '../model/loaders/errors.js';
import { HfTokenizerError } from '../model/hf-tokenizer.js';

const HELP = `Usage: stepwise make-model --preset tiny|small|42m|110m|8b --dtype TYPE --seed N --out FILE [options]

  --preset NAME     tiny (dim 64, 2 layers, vocab 512), small (dim 256, 4 layers, vocab 4096),
                    42m (dim 512, 8 layers, vocab 32000), 110m (dim 768, 12 layers,
                    vocab 32000), 8b (Llama 3 8B's shape; matrices
                    over 64M values repeat a block of 256 random rows, to write it in minutes)
  --dtype TYPE      ${DTYPES.join(', ')}, or llama.cpp's mixtures ${QUANT_MIXES.join(', ')}
                    (default f32); 256-block types fall back as llama.cpp does (q4_k -> q5_0,
                    q5_k -> q5_1, q6_k -> q8_0, q2_k/q3_k/iq4_xs -> iq4_nl) for matrices whose
                    rows are not a multiple of 256
  --seed N          random seed (default 0); the same seed writes the same bytes
  --out FILE        where to write the .gguf file
  --vocab FILE      llama2.c tokenizer.bin to take the vocabulary from (default: synthetic)
  --tokenizer DIR   a Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json): the
                    real vocabulary, merges, special tokens and chat template, written as
                    llama.cpp's converter writes them (padded to config.json's vocab_size
                    when the folder has one)
  --tied            share the embedding with the output projection
  --untied          separate output projection
  --kv-heads N      key/value heads (must divide the preset's heads)
  --arch NAME       ${ARCHITECTURES.join(', ')} (default llama): that family's exact tensor layout
                    and metadata (qwen2: q/k/v biases; qwen3: q/k norms; gemma3: q/k norms,
                    post-norms, GELU, sliding-window layers)
  --head-dim N      head width when it is not dim / heads (as Qwen3 and Gemma 3 have)
  --rope-freqs      Llama 3.1-style rope_freqs frequency factors (llama only; RoPE base 500000)
  --sliding-window N  gemma3's attention window (default 512)`;

/** Prints a usage mistake and returns the exit code for it (no stack trace). */
function usageError(msg: string): number {
  process.stderr.write(`stepwise make-model: ${msg}\n(see stepwise make-model --help)\n`);
  return 2;
}

export async function runMakeModel(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined> | undefined;
  try {
    values = parseCommandFlags(argv, {
      preset: { type: 'string' },
      dtype: { type: 'string', default: 'f32' },
      seed: { type: 'string', default: '0' },
      out: { type: 'string' },
      vocab: { type: 'string' },
      tokenizer: { type: 'string' },
      tied: { type: 'boolean' },
      untied: { type: 'boolean' },
      'kv-heads': { type: 'string' },
      arch: { type: 'string' },
      'head-dim': { type: 'string' },
      'rope-freqs': { type: 'boolean' },
      'sliding-window': { type: 'string' },
    }, HELP);
  } catch (e) {
    return usageError((e as Error).message);
  }
  if (!values) return 0;
  const preset = values.preset as string | undefined;
  if (preset === undefined) return usageError('--preset is required (tiny, small, 42m, 110m or 8b)');
  if (!Object.prototype.hasOwnProperty.call(PRESETS, preset)) return usageError(`unknown --preset '${preset}' (tiny, small, 42m, 110m or 8b)`);
  const dtype = values.dtype as string;
  if (!isWeightFormat(dtype)) return usageError(`unknown --dtype '${dtype}' (${[...DTYPES, ...QUANT_MIXES].join(', ')})`);
  const seedText = values.seed as string;
  const seed = Number(seedText);
  if (!/^-?\d+$/.test(seedText.trim()) || !Number.isSafeInteger(seed)) return usageError(`--seed must be an integer, got '${seedText}'`);
  const out = values.out as string | undefined;
  if (!out) return usageError('--out FILE is required');
  if (values.tied && values.untied) return usageError('--tied and --untied exclude each other');
  let nKvHeads: number | undefined;
  if (values['kv-heads'] !== undefined) {
    const raw = values['kv-heads'] as string;
    nKvHeads = Number(raw);
    const nHeads = PRESETS[preset as ModelPreset].nHeads;
    if (!/^\d+$/.test(raw.trim()) || nKvHeads < 1 || nHeads % nKvHeads !== 0) {
      return usageError(`--kv-heads must be a positive divisor of the preset's ${nHeads} heads, got '${raw}'`);
    }
  }
  const arch = (values.arch as string | undefined) ?? 'llama';
  if (!isArchitecture(arch)) return usageError(`unknown --arch '${arch}' (${ARCHITECTURES.join(', ')})`);
  const positive = (flag: string): number | undefined | string => {
    const raw = values[flag] as string | undefined;
    if (raw === undefined) return undefined;
    const n = Number(raw);
    return /^\d+$/.test(raw.trim()) && n > 0 ? n : `--${flag} must be a positive integer, got '${raw}'`;
  };
  const headDim = positive('head-dim');
  if (typeof headDim === 'string') return usageError(headDim);
  if (headDim !== undefined && headDim % 2 !== 0) return usageError(`--head-dim must be even, got ${headDim}`);
  const slidingWindow = positive('sliding-window');
  if (typeof slidingWindow === 'string') return usageError(slidingWindow);
  if (slidingWindow !== undefined && arch !== 'gemma3') return usageError('--sliding-window applies to --arch gemma3 only');
  if (values['rope-freqs'] && arch !== 'llama') return usageError('--rope-freqs applies to --arch llama only');
  const t0 = performance.now();
  try {
    const s = await makeModel({
      preset: preset as ModelPreset,
      dtype,
      seed,
      out,
      vocab: values.vocab as string | undefined,
      tokenizer: values.tokenizer as string | undefined,
      tied: values.tied ? true : values.untied ? false : undefined,
      nKvHeads,
      headDim,
      arch: { arch, ropeFreqs: values['rope-freqs'] === true, slidingWindow },
    });
    const types = Object.entries(s.tensorsByDtype).map(([d, n]) => `${n} ${d}`).join(', ');
    process.stdout.write(
      `wrote ${s.path}: ${arch} ${preset} ${dtype}, ${(s.params / 1e6).toFixed(2)}M params, ${(s.bytes / 2 ** 20).toFixed(1)} MiB of tensors ` +
        `(${types}), vocab ${s.shape.vocabSize}, ${s.shape.tied ? 'tied' : 'untied'}, ${s.shape.nKvHeads} kv heads, ` +
        `${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    return 0;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (e instanceof ModelFileError || e instanceof HfTokenizerError || e instanceof RangeError) process.stderr.write(`stepwise make-model: ${err.message}\n`);
    else if (err.code) process.stderr.write(`stepwise make-model: cannot write ${out}: ${err.message}\n`);
    else throw e;
    return 1;
  }
}
