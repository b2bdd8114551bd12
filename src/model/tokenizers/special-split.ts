// Splits text at special tokens before the merge algorithm sees it, the way llama.cpp partitions its
// input: each special token in turn (longest first) cuts every remaining text fragment at all its
// left-to-right occurrences. Control and unknown tokens take part only when parseSpecial is set, so
// that user text containing "<s>" is plain text by default; user-defined tokens always do.

import type { SpecialToken } from './vocab.js';

/** Text fragments (strings) and special token ids (numbers), in order; no empty strings. */
export type Fragment = string | number;

export function splitOnSpecials(text: string, specials: readonly SpecialToken[], parseSpecial: boolean): Fragment[] {
  let fragments: Fragment[] = text.length > 0 ? [text] : [];
  for (const special of specials) {
    if (!parseSpecial && !special.alwaysParsed) continue;
    let next: Fragment[] | null = null;
    for (let i = 0; i < fragments.length; i++) {
      const f = fragments[i]!;
      if (typeof f === 'number' || !f.includes(special.text)) {
        next?.push(f);
        continue;
      }
      next ??= fragments.slice(0, i);
      const parts = f.split(special.text);
      parts.forEach((part, k) => {
        if (k > 0) next!.push(special.id);
        if (part.length > 0) next!.push(part);
      });
    }
    if (next) fragments = next;
  }
  return fragments;
}
