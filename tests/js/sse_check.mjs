// Reads the drone stream with the dashboard's own fetch-based SSE reader (sse.js), outside
// a browser: node tests/js/sse_check.mjs URL [KEY] [EVENTS] [TIMEOUT_S]
// Prints one JSON line: {"events": [{type, id, lastEventId, connection}], "errors": [...],
// "requests": [{lastEventId}]}, after EVENTS
// events or TIMEOUT_S seconds. With DROP_AFTER=n the connection is cut after n events (the
// server sees a client go), to show the reader reconnects with Last-Event-ID.
import { openEventStream } from "../../service/dashboard/js/sse.js";

const [url, key, wanted = "3", timeoutS = "20"] = process.argv.slice(2);
const dropAfter = Number(process.env.DROP_AFTER || 0);
const events = [];
const errors = [];
const requests = [];
let current = null;

// fetch that records the headers of every request and can be cut from outside
const recordingFetch = (u, init) => {
  requests.push({ lastEventId: init.headers["Last-Event-ID"] ?? null });
  current = new AbortController();
  init.signal.addEventListener("abort", () => current.abort());
  return fetch(u, { ...init, signal: current.signal });
};

const done = () => {
  stream.close();
  console.log(JSON.stringify({ events, errors, requests }));
  process.exit(0);
};
const onEvent = (e) => {
  events.push({ type: e.type, id: JSON.parse(e.data).id, lastEventId: e.lastEventId,
                connection: requests.length });
  if (dropAfter && events.length === dropAfter) current.abort();
  if (events.length >= Number(wanted)) done();
};
const stream = openEventStream(url, {
  headers: key ? { Authorization: `Bearer ${key}` } : {},
  on: { state: onEvent, silent: onEvent, error: (err) => { errors.push(String(err.message || err)); } },
  fetchImpl: recordingFetch,
});
setTimeout(done, Number(timeoutS) * 1000);
