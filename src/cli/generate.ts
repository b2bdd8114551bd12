// `stepwise generate`: one prompt through the full engine, streamed to stdout (or one JSON object).
import { existsSync } from 'node:fs';
import { LLM, type GenerateParams } from '../llm.js';
import { ENGINE_FLAG_OPTIONS, ENGINE_FLAGS_HELP, engineOptionsFromFlags, parseIntFlag } from './engine-flags.js';
import { parseCommandFlags } from './command-flags.js';
import { UsageError } from './usage-error.js';

const HELP = `Usage: stepwise generate --model FILE (--prompt TEXT | --prompt-ids 1,2,3) [options]

  --model FILE               GGUF file or llama2.c checkpoint (.bin)
  --prompt TEXT              prompt text (tokenized with the model's tokenizer)
  --prompt-ids IDS           prompt as comma-separated token ids
  --max-tokens N             tokens to generate at most (default 64)
  --temperature T            0 = greedy (default 0.8)
  --top-k N  --top-p P  --min-p P
  --presence-penalty X  --frequency-penalty X  --repetition-penalty X
  --stop STR                 stop string (repeatable)
  --stop-token-ids IDS       comma-separated token ids that end generation
  --ignore-eos               keep generating past end-of-sequence
  --min-tokens N             generate at least N tokens
  --seed N                   per-request seed (same seed, same output)
  --logprobs N               report the chosen token's logprob and the top N
  --n N                      completions for the prompt (printed one after another)
  --json                     print one JSON object instead of streaming text

${ENGINE_FLAGS_HELP}`;

function parseFloatFlag(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const x = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(x)) throw new UsageError(`--${name} must be a number, got '${raw}'`);
  return x;
}

export function parseIdList(name: string, raw: string): number[] {
  const parts = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`--${name} needs at least one token id`);
  return parts.map((p) => parseIntFlag(name, p, 0));
}

export async function runGenerate(argv: string[]): Promise<number> {
  const values = parseCommandFlags(argv, {
    ...ENGINE_FLAG_OPTIONS,
    model: { type: 'string', short: 'm' },
    prompt: { type: 'string', short: 'p' },
    'prompt-ids': { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    'min-p': { type: 'string' },
    'presence-penalty': { type: 'string' },
    'frequency-penalty': { type: 'string' },
    'repetition-penalty': { type: 'string' },
    stop: { type: 'string', multiple: true },
    'stop-token-ids': { type: 'string' },
    'ignore-eos': { type: 'boolean' },
    'min-tokens': { type: 'string' },
    seed: { type: 'string' },
    logprobs: { type: 'string' },
    n: { type: 'string' },
    json: { type: 'boolean' },
  }, HELP, process.stdout);
  if (!values) return 0;
  if (!values.model) throw new UsageError('--model FILE is required (see stepwise generate --help)');
  if ((values.prompt === undefined) === (values['prompt-ids'] === undefined)) {
    throw new UsageError('give exactly one of --prompt TEXT or --prompt-ids 1,2,3');
  }
  const params: GenerateParams = {
    maxTokens: values['max-tokens'] !== undefined ? parseIntFlag('max-tokens', values['max-tokens']) : 64,
    temperature: parseFloatFlag('temperature', values.temperature) ?? 0.8,
    topK: values['top-k'] !== undefined ? parseIntFlag('top-k', values['top-k'], -1) : undefined,
    topP: parseFloatFlag('top-p', values['top-p']),
    minP: parseFloatFlag('min-p', values['min-p']),
    presencePenalty: parseFloatFlag('presence-penalty', values['presence-penalty']),
    frequencyPenalty: parseFloatFlag('frequency-penalty', values['frequency-penalty']),
    repetitionPenalty: parseFloatFlag('repetition-penalty', values['repetition-penalty']),
    stop: values.stop,
    stopTokenIds: values['stop-token-ids'] !== undefined ? parseIdList('stop-token-ids', values['stop-token-ids']) : undefined,
    ignoreEos: values['ignore-eos'] ? true : undefined,
    minTokens: values['min-tokens'] !== undefined ? parseIntFlag('min-tokens', values['min-tokens'], 0) : undefined,
    seed: values.seed !== undefined ? parseIntFlag('seed', values.seed, 0) : undefined,
    logprobs: values.logprobs !== undefined ? parseIntFlag('logprobs', values.logprobs, 0) : undefined,
    n: values.n !== undefined ? parseIntFlag('n', values.n) : undefined,
  };
  for (const k of Object.keys(params) as (keyof GenerateParams)[]) if (params[k] === undefined) delete params[k];
  const engineOptions = engineOptionsFromFlags(values);
  // Flags are checked before the file, so a typo is reported as such rather than hidden behind the path.
  if (!existsSync(values.model)) throw new UsageError(`model file not found: ${values.model}`);
  const prompt = values['prompt-ids'] !== undefined ? parseIdList('prompt-ids', values['prompt-ids']) : values.prompt!;

  const llm = await LLM.load(values.model, engineOptions);
  try {
    if (!values.json) process.stderr.write(`stepwise: ${llm.modelName} on ${llm.backend}\n`);
    if (values.json || (params.n ?? 1) > 1) {
      const [result] = await llm.generate(prompt, params);
      if (values.json) {
        const completion = (c: (typeof result.completions)[number]) => ({
          index: c.index,
          text: c.text,
          token_ids: c.tokenIds,
          finish_reason: c.finishReason,
          ...(c.stopReason !== undefined ? { stop_reason: c.stopReason } : {}),
          ...(c.logprobs ? { logprobs: c.logprobs.map((l) => ({ token_id: l.tokenId, logprob: l.logprob, top_logprobs: l.top.map((t) => ({ token_id: t.tokenId, logprob: t.logprob })) })) } : {}),
        });
        const body = {
          model: llm.modelName,
          backend: llm.backend,
          prompt_token_ids: llm.encode(prompt),
          ...completion(result),
          ...(result.completions.length > 1 ? { completions: result.completions.map(completion) } : {}),
          usage: { prompt_tokens: result.numPromptTokens, completion_tokens: result.completions.reduce((s, c) => s + c.tokenIds.length, 0) },
        };
        process.stdout.write(JSON.stringify(body) + '\n');
      } else {
        for (const c of result.completions) process.stdout.write(`--- completion ${c.index} (${c.finishReason})\n${llm.tokenizer ? c.text : c.tokenIds.join(' ')}\n`);
      }
      return 0;
    }
    const stream = llm.stream(prompt, params);
    const onSigint = () => llm.engine.abort(stream.requestId);
    process.once('SIGINT', onSigint);
    try {
      for await (const out of stream) {
        process.stdout.write(llm.tokenizer ? out.text : out.newTokenIds.map((t) => `${t} `).join(''));
      }
    } finally {
      process.off('SIGINT', onSigint);
    }
    process.stdout.write('\n');
    return 0;
  } finally {
    await llm.close();
  }
}
