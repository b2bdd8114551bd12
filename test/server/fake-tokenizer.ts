// A byte-level tokenizer for server unit tests that need text without a model file: token id =
// byte value + 3 (0 unk, 1 BOS, 2 EOS), so prompts and templates encode predictably.
import type { StreamDecoder, Tokenizer } from '../../src/model/tokenizer-types.js';

export function byteTokenizer(opts: { addBos?: boolean } = {}): Tokenizer {
  const pieces = ['<unk>', '<s>', '</s>'];
  const decode = (ids: readonly number[]): string =>
    Buffer.from(ids.filter((id) => id >= 3).map((id) => id - 3)).toString('utf8');
  return {
    vocabSize: 259,
    bosId: 1,
    eosId: 2,
    eogIds: new Set([2]),
    addBos: opts.addBos ?? true,
    encode(text, o) {
      let rest = text;
      const ids: number[] = [];
      if (o?.addBos ?? opts.addBos ?? true) ids.push(1);
      // With parseSpecial, "<s>" and "</s>" in the text become their special ids.
      while (rest.length > 0) {
        const special = o?.parseSpecial ? pieces.findIndex((p, i) => i > 0 && rest.startsWith(p)) : -1;
        if (special > 0) {
          ids.push(special);
          rest = rest.slice(pieces[special].length);
          continue;
        }
        const ch = rest[0];
        for (const b of Buffer.from(ch, 'utf8')) ids.push(b + 3);
        rest = rest.slice(ch.length);
      }
      return ids;
    },
    decode,
    tokenText: (id) => (id < 3 ? pieces[id] : String.fromCharCode(id - 3)),
    streamDecoder(): StreamDecoder {
      const held: number[] = [];
      return {
        push(id) {
          held.push(id);
          const s = decode(held);
          if (s.endsWith('\uFFFD')) return '';
          held.length = 0;
          return s;
        },
        flush: () => decode(held.splice(0)),
      };
    },
  };
}
