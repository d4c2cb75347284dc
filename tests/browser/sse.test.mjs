// The dashboard page's SSE parser (plugins/dashboard/web/assets/sse.js)
// under Node's test runner: line ends of every kind, pieces split anywhere,
// comments, multi-line data, event names and ids. Run by
// tests/e2e/dashboard.rs (`node --test tests/browser/sse.test.mjs`).

import assert from "node:assert/strict";
import { test } from "node:test";

import { SseParser, readEventStream } from "../../plugins/dashboard/web/assets/sse.js";

/** The events of `pieces` fed one after the other. */
function parse(...pieces) {
  const events = [];
  const parser = new SseParser((event) => events.push(event));
  for (const piece of pieces) parser.push(piece);
  return events;
}

const message = (data, extra = {}) => ({ type: "message", data, id: "", ...extra });

test("one event per blank line, whatever the line ends", () => {
  for (const end of ["\n", "\r\n", "\r"]) {
    assert.deepEqual(parse(`data: {"a":1}${end}${end}data: two${end}${end}`), [message('{"a":1}'), message("two")], JSON.stringify(end));
  }
});

test("an event is dispatched only at its blank line", () => {
  assert.deepEqual(parse("data: unfinished\n"), []);
  assert.deepEqual(parse("data: unfinished\n", "\n"), [message("unfinished")]);
});

test("a CRLF split between two pieces is one line end", () => {
  assert.deepEqual(parse("data: a\r", "\n\r", "\ndata: b\r\n\r\n"), [message("a"), message("b")]);
});

test("every split of a stream gives the same events", () => {
  const stream = ': stream open\r\n\r\nevent: row\r\nid: 7\r\ndata: {"x":\r\ndata: 2}\r\n\r\n: keep-alive\n\ndata:no space\n\n';
  const whole = parse(stream);
  assert.deepEqual(whole, [message('{"x":\n2}', { type: "row", id: "7" }), message("no space", { id: "7" })]);
  for (let at = 0; at <= stream.length; at += 1) {
    assert.deepEqual(parse(stream.slice(0, at), stream.slice(at)), whole, `split at ${at}`);
  }
  assert.deepEqual(parse(...stream), whole, "one character at a time");
});

test("comments and keep-alives dispatch nothing", () => {
  assert.deepEqual(parse(": keep-alive\n\n:\n\n"), []);
});

test("fields: one leading space dropped, unknown ones ignored, retry read", () => {
  const events = [];
  const parser = new SseParser((event) => events.push(event));
  parser.push("data:  two spaces\nfoo: bar\nretry: 2500\nretry: soon\ndata\n\n");
  assert.deepEqual(events, [message(" two spaces\n")]);
  assert.equal(parser.retry, 2500);
});

test("readEventStream reads a fetch() body to its end", async () => {
  const encoder = new TextEncoder();
  const pieces = ["data: {\"request_id\":\"r1\"}\n", "\ndata: é", "\n\n"];
  const body = new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
  const events = [];
  await readEventStream(new Response(body), (event) => events.push(event));
  assert.deepEqual(events, [message('{"request_id":"r1"}'), message("é")]);
});

test("readEventStream stops when its signal aborts", async () => {
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("data: first\n\n"));
      // Never closed: only the abort ends the read.
    },
  });
  const controller = new AbortController();
  const events = [];
  const reading = readEventStream(new Response(body), (event) => {
    events.push(event);
    controller.abort();
  }, controller.signal);
  await reading;
  assert.deepEqual(events, [message("first")]);
});
