// Best-first merging of adjacent symbols, the loop SentencePiece's BPE mode and byte-level BPE share;
// they differ only in how a pair is ranked (piece score vs merge rank).
import { PriorityQueue } from './priority-queue.js';

interface Candidate {
  left: number;
  right: number;
  priority: number;
  /** Length of the merged text; a pair whose symbols changed since it was queued no longer matches. */
  size: number;
}

/**
 * Symbols are spans text[start[i], start[i] + len[i]) kept as a doubly linked list. The best pair
 * (higher `priority` first when `higherFirst`, else lower; leftmost on ties) is merged by growing the
 * left span over the right one (len 0 marks a symbol merged away), and its new neighbours are queued.
 * `priorityOf(left, right)` returns undefined for a pair that may not merge. Returns the surviving
 * spans in order as [start, length] pairs.
 */
export function mergeSymbols(
  text: string,
  start: ArrayLike<number>,
  lengths: ArrayLike<number>,
  priorityOf: (left: string, right: string) => number | undefined,
  higherFirst: boolean,
): Array<[number, number]> {
  const n = start.length;
  if (n === 0) return [];
  const len = Int32Array.from(lengths);
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const better = higherFirst
    ? (a: Candidate, b: Candidate) => a.priority > b.priority || (a.priority === b.priority && a.left < b.left)
    : (a: Candidate, b: Candidate) => a.priority < b.priority || (a.priority === b.priority && a.left < b.left);
  const queue = new PriorityQueue<Candidate>(better);
  const tryAdd = (left: number, right: number) => {
    if (left < 0 || right < 0) return;
    const priority = priorityOf(text.substr(start[left]!, len[left]!), text.substr(start[right]!, len[right]!));
    if (priority !== undefined) queue.push({ left, right, priority, size: len[left]! + len[right]! });
  };
  for (let i = 1; i < n; i++) tryAdd(i - 1, i);

  for (let c = queue.pop(); c !== undefined; c = queue.pop()) {
    const { left, right } = c;
    if (len[left] === 0 || len[right] === 0 || len[left]! + len[right]! !== c.size) continue;
    len[left] = c.size;
    len[right] = 0;
    next[left] = next[right]!;
    if (next[right]! >= 0) prev[next[right]!] = left;
    tryAdd(prev[left]!, left);
    tryAdd(left, next[left]!);
  }

  const spans: Array<[number, number]> = [];
  for (let i = 0; i !== -1; i = next[i]!) spans.push([start[i]!, len[i]!]);
  return spans;
}
