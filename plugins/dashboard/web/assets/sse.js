// Server-sent events read from a fetch() response, so the request can carry
// an Authorization header (EventSource cannot). The parser follows the
// WHATWG "event stream" interpretation: lines end in CRLF, LF or CR (a CR at
// the end of one chunk and an LF at the start of the next are one line end),
// `:` starts a comment, one space after the colon is dropped, `data` lines
// are joined with LF, and an event is dispatched on a blank line when it has
// data.

/** Splits text fed in arbitrary pieces into events. */
export class SseParser {
  /** @param {(event: {type: string, data: string, id: string}) => void} onEvent */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.skipLeadingLf = false;
    this.type = "";
    this.data = [];
    this.lastId = "";
    /** Milliseconds the server asked to wait before reconnecting, if it did. */
    this.retry = null;
  }

  /** Feeds the next piece of decoded text. */
  push(text) {
    if (this.skipLeadingLf && text.startsWith("\n")) {
      text = text.slice(1);
    }
    this.skipLeadingLf = false;
    this.buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      this.line(this.buffer.slice(start, end));
      if (this.buffer[end] === "\r") {
        if (end + 1 < this.buffer.length) {
          start = this.buffer[end + 1] === "\n" ? end + 2 : end + 1;
        } else {
          // The LF of a CRLF may come in the next piece.
          this.skipLeadingLf = true;
          start = end + 1;
        }
      } else {
        start = end + 1;
      }
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.type = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }

  dispatch() {
    if (this.data.length > 0) {
      this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastId });
    }
    this.type = "";
    this.data = [];
  }
}

/**
 * Reads the event stream of `response` until it ends (resolves) or fails
 * (rejects, also when `signal` aborts), calling `onEvent` for each event.
 */
export async function readEventStream(response, onEvent, signal) {
  const parser = new SseParser(onEvent);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
  } finally {
    signal?.removeEventListener("abort", cancel);
  }
  return parser;
}
