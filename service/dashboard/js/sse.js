// Server-Sent Events over fetch: unlike EventSource it can send the viewer key as a header
// (a deployment that requires keys for reads would refuse the stream otherwise), and it
// reconnects the same way EventSource does: after the server's `retry:` delay, with
// Last-Event-ID, so no event is missed across a dropped connection.

export function openEventStream(url, { headers = {}, on = {}, fetchImpl = fetch } = {}) {
  let lastId = null;
  let retryMs = 3000;
  let closed = false;
  let controller = null;

  const dispatch = (event) => {
    if (event.id !== null) lastId = event.id;
    const handler = on[event.type || "message"];
    if (handler && event.data !== null) handler({ type: event.type, data: event.data, lastEventId: lastId });
  };

  // One event per blank line; "field: value" lines, ":" lines are comments (heartbeats).
  const parse = (block) => {
    const event = { type: "", data: null, id: null };
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data = event.data === null ? value : `${event.data}\n${value}`;
      else if (field === "event") event.type = value;
      else if (field === "id") event.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
    }
    return event;
  };

  const connect = async () => {
    while (!closed) {
      controller = new AbortController();
      try {
        const h = { ...headers, Accept: "text/event-stream" };
        if (lastId !== null) h["Last-Event-ID"] = lastId;
        const response = await fetchImpl(url, { headers: h, signal: controller.signal, cache: "no-store" });
        if (!response.ok) {
          if (on.error) on.error(new Error(`${response.status} ${response.statusText} from ${url}`));
          if (response.status >= 400 && response.status < 500) return; // a refused key stays refused
        } else {
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let end;
            while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
              dispatch(parse(block));
            }
          }
        }
      } catch (err) {
        if (closed) return;
        if (on.error) on.error(err);
      }
      if (!closed) await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  };

  connect();
  return {
    close() {
      closed = true;
      if (controller) controller.abort();
    },
  };
}
