// Pre-tokenizers of byte-level BPE vocabularies: they cut text into words before merging, so merges
// never cross a word boundary. The two supported ones are the GPT-2 regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// and the Llama 3 regex
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// written out as scanners, as llama.cpp does, rather than as JavaScript regexes: that pins down the
// character classes (llama.cpp's whitespace set is not JavaScript's \s: it has U+0085 and lacks U+FEFF)
// and reproduces llama.cpp's splits exactly.

export type PreTokenizer = (text: string) => string[];

const LETTER = 1;
const NUMBER = 2;
const WHITESPACE = 4;
/** Any character at all; 0 is "past the end of the text", which no class matches. */
const PRESENT = 8;

const IS_LETTER = /^\p{L}$/u;
const IS_NUMBER = /^\p{N}$/u;
const flagCache = new Map<number, number>();

function isWhitespace(cp: number): boolean {
  return (
    (cp >= 0x09 && cp <= 0x0d) ||
    cp === 0x20 ||
    cp === 0x85 ||
    cp === 0xa0 ||
    cp === 0x1680 ||
    (cp >= 0x2000 && cp <= 0x200a) ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    cp === 0x202f ||
    cp === 0x205f ||
    cp === 0x3000
  );
}

function flagsOf(cp: number): number {
  let f = flagCache.get(cp);
  if (f === undefined) {
    const ch = String.fromCodePoint(cp);
    f = PRESENT | (IS_LETTER.test(ch) ? LETTER : 0) | (IS_NUMBER.test(ch) ? NUMBER : 0) | (isWhitespace(cp) ? WHITESPACE : 0);
    if (flagCache.size < 65536) flagCache.set(cp, f);
  }
  return f;
}

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;
const APOSTROPHE = 0x27;

/** Shared scanner state: the text as code points, and words cut off as the scan advances. */
class Scan {
  readonly cps: number[] = [];
  /** UTF-16 offset of each code point, plus the text's length at the end. */
  private readonly offsets: number[] = [];
  readonly words: string[] = [];
  private wordStart = 0;
  constructor(readonly text: string) {
    for (let i = 0; i < text.length; ) {
      const cp = text.codePointAt(i)!;
      this.cps.push(cp);
      this.offsets.push(i);
      i += cp > 0xffff ? 2 : 1;
    }
    this.offsets.push(text.length);
  }
  get n(): number {
    return this.cps.length;
  }
  cp(pos: number): number {
    return pos < this.cps.length ? this.cps[pos]! : -1;
  }
  flags(pos: number): number {
    return pos < this.cps.length ? flagsOf(this.cps[pos]!) : 0;
  }
  /** Ends the current word at `end` (exclusive). */
  cut(end: number): void {
    if (end > this.wordStart) this.words.push(this.text.slice(this.offsets[this.wordStart], this.offsets[end]));
    this.wordStart = end;
  }
  /** Length of a contraction ('s 't 're 've 'm 'll 'd) at pos, or 0. */
  contraction(pos: number, ignoreCase: boolean): number {
    if (this.cps[pos] !== APOSTROPHE || pos + 1 >= this.n) return 0;
    const low = (p: number) => {
      const c = this.cp(p);
      return ignoreCase && c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
    };
    const a = low(pos + 1);
    if (a === 0x73 || a === 0x74 || a === 0x6d || a === 0x64) return 2; // s t m d
    if (pos + 2 >= this.n) return 0;
    const b = low(pos + 2);
    const two = (x: number, y: number) => a === x && b === y;
    return two(0x72, 0x65) || two(0x76, 0x65) || two(0x6c, 0x6c) ? 3 : 0; // re ve ll
  }
  /** Whitespace run at pos, ending before one non-space character so it can lead the next word. */
  whitespace(pos: number): number {
    let k = 0;
    while (this.flags(pos + k) & WHITESPACE) k++;
    if (k > 1 && pos + k < this.n) return pos + k - 1; // \s+(?!\S)
    if (k > 0) return pos + k; // \s+
    return pos + 1;
  }
}

const notWordish = (f: number) => (f & PRESENT) !== 0 && (f & (LETTER | NUMBER | WHITESPACE)) === 0;

export function gpt2PreTokenize(text: string): string[] {
  const s = new Scan(text);
  for (let pos = 0; pos < s.n; ) {
    const c = s.cp(pos);
    const k = s.contraction(pos, false);
    if (k > 0) {
      s.cut((pos += k));
      continue;
    }
    // The optional leading space of " ?\p{L}+", " ?\p{N}+" and " ?[^\s\p{L}\p{N}]+".
    const lead = c === SPACE ? 1 : 0;
    const f = s.flags(pos + lead);
    if (f & LETTER) {
      pos += lead;
      while (s.flags(pos) & LETTER) pos++;
    } else if (f & NUMBER) {
      pos += lead;
      while (s.flags(pos) & NUMBER) pos++;
    } else if (notWordish(f)) {
      pos += lead;
      while (notWordish(s.flags(pos))) pos++;
    } else {
      pos = s.whitespace(pos);
    }
    s.cut(pos);
  }
  return s.words;
}

export function llama3PreTokenize(text: string): string[] {
  return llama3StyleSplit(text, 3);
}

/** Qwen2's regex: Llama 3's with single digits (\p{N} instead of \p{N}{1,3}). */
export function qwen2PreTokenize(text: string): string[] {
  return llama3StyleSplit(text, 1);
}

/**
 * SmolLM's (llama.cpp's "smollm", as StarCoder's): every digit is its own word, then the GPT-2 regex
 * splits what lies between digits.
 */
export function smollmPreTokenize(text: string): string[] {
  const words: string[] = [];
  let start = 0;
  let i = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (flagsOf(cp) & NUMBER) {
      if (i > start) words.push(...gpt2PreTokenize(text.slice(start, i)));
      words.push(ch);
      start = i + ch.length;
    }
    i += ch.length;
  }
  if (text.length > start) words.push(...gpt2PreTokenize(text.slice(start)));
  return words;
}

/** The Llama 3 regex with digit runs cut into groups of `digitGroup`. */
function llama3StyleSplit(text: string, digitGroup: number): string[] {
  const s = new Scan(text);
  for (let pos = 0; pos < s.n; ) {
    const c = s.cp(pos);
    const f = s.flags(pos);
    const k = s.contraction(pos, true);
    if (k > 0) {
      s.cut((pos += k));
      continue;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c !== CR && c !== LF && !(f & NUMBER) && ((f & LETTER) || (s.flags(pos + 1) & LETTER))) {
      pos++;
      while (s.flags(pos) & LETTER) pos++;
      s.cut(pos);
      continue;
    }
    // \p{N}{1,3} (Llama 3) or \p{N} (Qwen2)
    if (f & NUMBER) {
      let groupStart = pos;
      while (s.flags(pos) & NUMBER) {
        pos++;
        if (pos - groupStart >= digitGroup) {
          s.cut(pos);
          groupStart = pos;
        }
      }
      s.cut(pos);
      continue;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*". (A lone trailing space also lands here, as in llama.cpp.)
    const lead = c === SPACE ? 1 : 0;
    if ((s.flags(pos + lead) & (LETTER | NUMBER | WHITESPACE)) === 0) {
      pos += lead;
      while (notWordish(s.flags(pos))) pos++;
      while (s.cp(pos) === CR || s.cp(pos) === LF) pos++;
      s.cut(pos);
      continue;
    }
    // \s*[\r\n]+ : whitespace up to and including its last line break.
    let end = pos;
    let lastBreak = -1;
    while (s.flags(end) & WHITESPACE) {
      if (s.cp(end) === CR || s.cp(end) === LF) lastBreak = end + 1;
      end++;
    }
    pos = lastBreak > 0 ? lastBreak : s.whitespace(pos);
    s.cut(pos);
  }
  return s.words;
}
