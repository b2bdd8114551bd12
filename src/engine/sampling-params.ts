// A request's sampling parameters made whole and checked: unset fields take DEFAULT_SAMPLING's
// values, and the first field out of range or of the wrong type is named in an InvalidParamError
// (which the server turns into a 400 on that parameter).
import { DEFAULT_SAMPLING, type SamplingParams } from './types.js';
import { InvalidParamError } from './request-errors.js';
import { resolveConstraint } from './structured/constraint.js';

export { InvalidParamError };

/** Most alternatives a request may ask logprobs for (OpenAI's limit for top_logprobs). */
export const MAX_LOGPROBS = 20;

const PARAM_NAMES = new Set(Object.keys(DEFAULT_SAMPLING)); // includes 'seed' (present, undefined)

/**
 * Fills the unset fields of `partial` from DEFAULT_SAMPLING (fields set to undefined count as unset)
 * and checks every field; throws InvalidParamError naming the first field that is wrong.
 */
export function resolveSamplingParams(partial: Partial<SamplingParams> = {}): SamplingParams {
  if (partial === null || typeof partial !== 'object') {
    throw new InvalidParamError('sampling', `sampling parameters must be an object, got ${describe(partial)}`);
  }
  for (const key of Object.keys(partial)) {
    if (!PARAM_NAMES.has(key)) throw new InvalidParamError(key, `unknown sampling parameter '${key}'`);
  }
  const pick = <K extends keyof SamplingParams>(k: K): SamplingParams[K] =>
    partial[k] === undefined ? DEFAULT_SAMPLING[k] : (partial[k] as SamplingParams[K]);

  const p: SamplingParams = {
    maxTokens: pick('maxTokens'),
    temperature: pick('temperature'),
    topK: pick('topK'),
    topP: pick('topP'),
    minP: pick('minP'),
    presencePenalty: pick('presencePenalty'),
    frequencyPenalty: pick('frequencyPenalty'),
    repetitionPenalty: pick('repetitionPenalty'),
    stopTokenIds: pick('stopTokenIds'),
    stop: pick('stop'),
    ignoreEos: pick('ignoreEos'),
    minTokens: pick('minTokens'),
    logprobs: pick('logprobs'),
    seed: pick('seed'),
    n: pick('n'),
    structuredOutputs: undefined,
    speculative: pick('speculative'),
  };
  const structured = pick('structuredOutputs');

  requireInteger('maxTokens', p.maxTokens, 1);
  requireNumber('temperature', p.temperature, 0, Infinity, 'a finite number >= 0');
  requireInteger('topK', p.topK, -1, undefined, ' (0 or -1 disables it)');
  if (typeof p.topP !== 'number' || !(p.topP > 0 && p.topP <= 1)) {
    throw new InvalidParamError('topP', `topP must be a number in (0, 1], got ${describe(p.topP)}`);
  }
  requireNumber('minP', p.minP, 0, 1, 'a number in [0, 1]');
  requireNumber('presencePenalty', p.presencePenalty, -2, 2, 'a number in [-2, 2]');
  requireNumber('frequencyPenalty', p.frequencyPenalty, -2, 2, 'a number in [-2, 2]');
  if (typeof p.repetitionPenalty !== 'number' || !(p.repetitionPenalty > 0) || !Number.isFinite(p.repetitionPenalty)) {
    throw new InvalidParamError('repetitionPenalty', `repetitionPenalty must be a finite number > 0, got ${describe(p.repetitionPenalty)}`);
  }
  if (!Array.isArray(p.stopTokenIds)) {
    throw new InvalidParamError('stopTokenIds', `stopTokenIds must be an array of token ids, got ${describe(p.stopTokenIds)}`);
  }
  p.stopTokenIds.forEach((id, i) => {
    if (!Number.isSafeInteger(id) || id < 0) {
      throw new InvalidParamError('stopTokenIds', `stopTokenIds[${i}] must be an integer token id >= 0, got ${describe(id)}`);
    }
  });
  if (!Array.isArray(p.stop)) throw new InvalidParamError('stop', `stop must be an array of strings, got ${describe(p.stop)}`);
  p.stop.forEach((s, i) => {
    if (typeof s !== 'string' || s.length === 0) {
      throw new InvalidParamError('stop', `stop[${i}] must be a non-empty string, got ${describe(s)}`);
    }
  });
  if (typeof p.ignoreEos !== 'boolean') throw new InvalidParamError('ignoreEos', `ignoreEos must be a boolean, got ${describe(p.ignoreEos)}`);
  requireInteger('minTokens', p.minTokens, 0);
  if (p.minTokens > p.maxTokens) {
    throw new InvalidParamError('minTokens', `minTokens (${p.minTokens}) must not exceed maxTokens (${p.maxTokens})`);
  }
  if (p.logprobs !== null) requireInteger('logprobs', p.logprobs, 0, MAX_LOGPROBS, ' or null');
  if (p.seed !== undefined && !Number.isSafeInteger(p.seed)) {
    throw new InvalidParamError('seed', `seed must be an integer (safe-integer range), got ${describe(p.seed)}`);
  }
  requireInteger('n', p.n, 1);
  if (typeof p.speculative !== 'boolean') throw new InvalidParamError('speculative', `speculative must be a boolean, got ${describe(p.speculative)}`);
  if (structured !== undefined && structured !== null) {
    resolveConstraint(structured); // its shape; whether it compiles is checked where the grammar is compiled
    p.structuredOutputs = structuredClone(structured);
  }

  // Copies, so a caller mutating its arrays later cannot change a running request.
  p.stopTokenIds = [...p.stopTokenIds];
  p.stop = [...p.stop];
  return p;
}

function requireInteger(name: string, v: unknown, min: number, max?: number, note = ''): void {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= min && (max === undefined || v <= max)) return;
  const range = max === undefined ? `>= ${min}` : `in [${min}, ${max}]`;
  throw new InvalidParamError(name, `${name} must be an integer ${range}${note}, got ${describe(v)}`);
}

function requireNumber(name: string, v: unknown, min: number, max: number, what: string): void {
  if (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max) return;
  throw new InvalidParamError(name, `${name} must be ${what}, got ${describe(v)}`);
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}
