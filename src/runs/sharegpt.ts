// Reads ShareGPT-format conversation files, the dataset vLLM's serving benchmark uses:
//   [ { "id": "...", "conversations": [ { "from": "human", "value": "..." }, { "from": "gpt", "value": "..." }, ... ] }, ... ]
// Each conversation becomes one request: its first user turn is the prompt, and the length of the
// assistant turn that answers it is the reference output length (the request's max_tokens).
import { readFileSync } from 'node:fs';
import { DatasetError } from './errors.js';

export interface ShareGptPair {
  /** Index of the conversation in the file. */
  entry: number;
  prompt: string;
  completion: string;
}

export interface ShareGptFile {
  pairs: ShareGptPair[];
  /** Conversations without a user turn followed by an assistant turn (skipped, as vLLM does). */
  skipped: number;
}

const USER_ROLES = new Set(['human', 'user']);
const ASSISTANT_ROLES = new Set(['gpt', 'assistant', 'chatgpt', 'bing', 'bard', 'model']);

export function readShareGptFile(file: string): ShareGptFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DatasetError(file, code === 'ENOENT' ? 'file not found' : `cannot read file (${(err as Error).message})`);
  }
  return parseShareGpt(text, file);
}

/** Parses ShareGPT JSON text; `file` only names the source in errors. */
export function parseShareGpt(text: string, file: string): ShareGptFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new DatasetError(file, `not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(data)) {
    throw new DatasetError(file, `expected a JSON array of conversations, got ${describe(data)}`);
  }
  const pairs: ShareGptPair[] = [];
  let skipped = 0;
  data.forEach((entry: unknown, i: number) => {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new DatasetError(file, `entry ${i}: expected an object with a "conversations" array, got ${describe(entry)}`);
    }
    const turns = (entry as { conversations?: unknown }).conversations;
    if (!Array.isArray(turns)) {
      throw new DatasetError(file, `entry ${i}: "conversations" must be an array, got ${describe(turns)}`);
    }
    const parsed = turns.map((t: unknown, j: number) => {
      if (t === null || typeof t !== 'object') throw new DatasetError(file, `entry ${i}, turn ${j}: expected an object with "from" and "value", got ${describe(t)}`);
      const { from, value } = t as { from?: unknown; value?: unknown };
      if (typeof from !== 'string') throw new DatasetError(file, `entry ${i}, turn ${j}: "from" must be a string, got ${describe(from)}`);
      if (typeof value !== 'string') throw new DatasetError(file, `entry ${i}, turn ${j}: "value" must be a string, got ${describe(value)}`);
      return { from: from.toLowerCase(), value };
    });
    const u = parsed.findIndex((t) => USER_ROLES.has(t.from));
    const answer = u >= 0 ? parsed[u + 1] : undefined;
    if (!answer || !ASSISTANT_ROLES.has(answer.from)) {
      skipped++;
      return;
    }
    pairs.push({ entry: i, prompt: parsed[u].value, completion: answer.value });
  });
  if (pairs.length === 0) {
    throw new DatasetError(file, `no usable conversations (need a user turn answered by an assistant turn; ${data.length} entries read)`);
  }
  return { pairs, skipped };
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (x === undefined) return 'nothing';
  if (Array.isArray(x)) return 'an array';
  return typeof x === 'object' ? 'an object' : `a ${typeof x}`;
}
