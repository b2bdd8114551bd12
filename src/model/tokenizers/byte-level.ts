// GPT-2's reversible byte <-> character mapping. Byte-level BPE vocabularies store every token as a
// string of these characters, one per byte, so that all 256 byte values are printable: bytes that are
// already visible Latin-1 characters map to themselves, the rest to U+0100 onward in byte order
// (space becomes 'Ġ', newline 'Ċ').

function buildByteToChar(): string[] {
  const table: string[] = new Array<string>(256);
  const visible = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(visible(b) ? b : next++);
  return table;
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

const CHAR_TO_BYTE = new Map<number, number>(BYTE_TO_CHAR.map((ch, b) => [ch.codePointAt(0)!, b]));

const utf8 = new TextEncoder();

/** The byte a byte-level character stands for, or undefined for a character outside the mapping. */
export function byteOfChar(ch: string): number | undefined {
  return CHAR_TO_BYTE.get(ch.codePointAt(0)!);
}

/** The byte-level spelling of a text: its UTF-8 bytes, each as its mapped character. */
export function toByteLevel(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}

/**
 * The bytes a byte-level piece stands for. A character outside the mapping (a hand-made vocabulary
 * may contain one) contributes its own UTF-8 bytes rather than being lost.
 */
export function fromByteLevel(piece: string): Uint8Array {
  const out: number[] = [];
  for (const ch of piece) {
    const b = CHAR_TO_BYTE.get(ch.codePointAt(0)!);
    if (b !== undefined) out.push(b);
    else out.push(...utf8.encode(ch));
  }
  return Uint8Array.from(out);
}
