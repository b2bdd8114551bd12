// Server-sent events over a raw Node response, as OpenAI streams: `data: {json}\n\n` per chunk and a
// final `data: [DONE]`. Writes respect back-pressure (a slow reader pauses its producer rather than
// growing an unbounded buffer), and a client that goes away is reported once through onClose.
import type { ServerResponse } from 'node:http';

export class SseWriter {
  private closedByPeer = false;
  private ended = false;
  private readonly closeListeners: Array<() => void> = [];

  constructor(private readonly res: ServerResponse) {
    // The client may already be gone (it hung up while the request was being parsed).
    if (res.destroyed) this.closedByPeer = true;
    // A write racing a reset socket reports an error here; the close handler below does the cleanup.
    res.on('error', () => {});
    res.on('close', () => {
      if (!res.writableFinished) {
        this.closedByPeer = true;
        for (const f of this.closeListeners.splice(0)) f();
      }
    });
  }

  /** Sends the status line and SSE headers. */
  open(extraHeaders: Record<string, string> = {}): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Tells nginx-style proxies not to buffer the stream.
      'x-accel-buffering': 'no',
      ...extraHeaders,
    });
    this.res.flushHeaders();
  }

  /** True once the client disconnected; writes are then dropped. */
  get isClosed(): boolean {
    return this.closedByPeer || this.ended || this.res.destroyed;
  }

  /** Runs `f` when the client disconnects before the stream ended (at most once). */
  onClose(f: () => void): void {
    if (this.closedByPeer) f();
    else this.closeListeners.push(f);
  }

  /** Writes one `data:` event; resolves when the socket can take more. */
  async send(data: unknown): Promise<void> {
    await this.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }

  /** A named event (used by the live view), e.g. `event: step`. */
  async sendEvent(event: string, data: unknown): Promise<void> {
    await this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Writes `data: [DONE]` and ends the response. */
  async done(): Promise<void> {
    await this.send('[DONE]');
    this.end();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.res.writableEnded) this.res.end();
  }

  private async write(text: string): Promise<void> {
    if (this.isClosed) return;
    if (this.res.write(text)) return;
    // Buffer full: wait until it drains or the client leaves.
    await new Promise<void>((resolve) => {
      const finish = () => {
        this.res.off('drain', finish);
        this.res.off('close', finish);
        resolve();
      };
      this.res.on('drain', finish);
      this.res.on('close', finish);
    });
  }
}
