// A deterministic SentencePiece-style vocabulary of any size, for generated models that have no
// real tokenizer: <unk>, <s>, </s>, the 256 byte-fallback pieces, then ordinary pieces with
// decreasing scores. Ordinary pieces are built so that every piece longer than one character minus
// its last character is also a piece: llama.cpp's SentencePiece tokenizer builds tokens by merging
// adjacent pieces, so this keeps every piece reachable and tokenization sensible ("▁the" from "▁th" + "e").

/** llama.cpp token types (llama_token_type). */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

export interface SpmVocab {
  pieces: string[];
  scores: number[];
  tokenTypes: number[];
}

/** SentencePiece's word-boundary marker (U+2581), standing for a space. */
export const SPACE = '\u2581';

// Letters in rough English frequency order, so the generated letter combinations that fill large
// vocabularies start with the more plausible ones.
const LETTERS = 'etaoinshrdlcumwfgypbvkjxqz';
const UPPER = LETTERS.toUpperCase();
const DIGITS = '0123456789';
const PUNCT = `.,!?'";:-()[]{}/\\&*+=<>@#$%_|~\``;

const WORDS = (
  'the and to a of was he she it in that his her they you said with for on is had but at one day ' +
  'once upon time there little girl boy named lily tom ben sam mom dad big happy play park dog cat ' +
  'friend saw went wanted very so not all be have this from what we were are can will do like go ' +
  'see up out could would about them then into some when no more make get like just know how good ' +
  'new first also after back other many only come over think because people any way even want give ' +
  'most us man tree ball sun sky water house red blue green toy bird fish car home run jump look ' +
  'found made help sad love nice fun care smile hug tell asked felt thought each every always never ' +
  'together learned important lesson share kind best'
).split(' ');

const SUFFIXES = 'ing ed er es ly s e y al en est ful ness ment tion ion ous ive able ity ers ings ies ted'.split(' ');

/** Ordinary pieces in order of preference, without duplicates, each one's prefix before it. */
function* ordinaryPieces(): Generator<string> {
  yield SPACE;
  for (const c of LETTERS + UPPER + DIGITS + PUNCT) yield c;
  for (const c of LETTERS) yield SPACE + c;
  for (const c of UPPER) yield SPACE + c;
  for (const c of DIGITS + PUNCT) yield SPACE + c;
  // Whole common words (with all their prefixes, so they can be merged up to), then suffixes.
  for (const w of WORDS) for (let k = 2; k <= w.length; k++) yield SPACE + w.slice(0, k);
  for (const w of WORDS) yield SPACE + w[0]!.toUpperCase() + w.slice(1, 2);
  for (const w of WORDS) for (let k = 3; k <= w.length; k++) yield SPACE + w[0]!.toUpperCase() + w.slice(1, k);
  for (const s of SUFFIXES) for (let k = 2; k <= s.length; k++) yield s.slice(0, k);
  // Then letter combinations, as many as the vocabulary needs.
  for (const a of LETTERS) for (const b of LETTERS) yield SPACE + a + b;
  for (const a of LETTERS) for (const b of LETTERS) yield a + b;
  for (const a of LETTERS) for (const b of LETTERS) for (const c of LETTERS) yield SPACE + a + b + c;
  for (const a of LETTERS) for (const b of LETTERS) for (const c of LETTERS) yield a + b + c;
  for (const a of LETTERS) for (const b of LETTERS) for (const c of LETTERS) for (const d of LETTERS) yield SPACE + a + b + c + d;
}

/** Special and byte pieces every vocabulary starts with. */
export const RESERVED_PIECES = 3 + 256;

function byteHex(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** The first `size` pieces of the synthetic vocabulary (259 reserved + ordinary pieces). */
export function syntheticVocab(size: number): SpmVocab {
  if (!Number.isInteger(size) || size <= RESERVED_PIECES) {
    throw new RangeError(`a synthetic vocabulary needs more than ${RESERVED_PIECES} tokens, got ${size}`);
  }
  const pieces = ['<unk>', '<s>', '</s>'];
  const tokenTypes: number[] = [TOKEN_TYPE.unknown, TOKEN_TYPE.control, TOKEN_TYPE.control];
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    pieces.push(byteHex(b));
    tokenTypes.push(TOKEN_TYPE.byte);
    scores.push(0);
  }
  const seen = new Set(pieces);
  for (const p of ordinaryPieces()) {
    if (pieces.length === size) break;
    if (seen.has(p)) continue;
    seen.add(p);
    // Scores are log-probability-like: the earlier (more common) a piece, the higher.
    scores.push(-(pieces.length - RESERVED_PIECES));
    pieces.push(p);
    tokenTypes.push(TOKEN_TYPE.normal);
  }
  if (pieces.length < size) throw new RangeError(`synthetic vocabulary is limited to ${pieces.length} tokens, ${size} asked`);
  return { pieces, scores, tokenTypes };
}

/**
 * A llama2.c tokenizer.bin vocabulary (Llama 2's 32000 pieces) in GGUF's SentencePiece form:
 * llama2.c writes spaces as ' ' and BOS/EOS as "\n<s>\n"/"\n</s>\n"; GGUF wants '▁', '<s>', '</s>'.
 */
export function spmVocabFromLlama2c(pieces: readonly string[], scores: readonly number[]): SpmVocab {
  const out: SpmVocab = { pieces: [], scores: [...scores], tokenTypes: [] };
  pieces.forEach((raw, id) => {
    let p = raw;
    if (id === 1 && raw.trim() === '<s>') p = '<s>';
    else if (id === 2 && raw.trim() === '</s>') p = '</s>';
    const isByte = /^<0x[0-9A-Fa-f]{2}>$/.test(p);
    if (id !== 1 && id !== 2 && !isByte) p = p.replaceAll(' ', SPACE);
    out.pieces.push(p);
    out.tokenTypes.push(id === 0 ? TOKEN_TYPE.unknown : id === 1 || id === 2 ? TOKEN_TYPE.control : isByte ? TOKEN_TYPE.byte : TOKEN_TYPE.normal);
  });
  return out;
}
