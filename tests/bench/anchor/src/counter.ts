// The anchor's counter party, for the "writes" and "increments" scenarios: the same semantics as partyd's built-in
// "counter" kind (without its alarm). The count lives in the room's storage.
//   POST -> count + 1, stored, {"type":"count","count":N} to every connection; 200 {"room","count"}
//   GET  -> 200 {"room","count"}
//   WebSocket: {"type":"count","count":N} on connect; the text message "increment" -> count + 1, stored,
//   {"type":"count","count":N} to every connection, the sender included (the runtime's output gate holds it until
//   the write is confirmed); anything else sent gets {"type":"error"}
import type * as Party from "partykit/server";

export default class Counter implements Party.Server {
  constructor(readonly room: Party.Room) {}

  private async read(): Promise<number> {
    return (await this.room.storage.get<number>("count")) ?? 0;
  }

  async onConnect(conn: Party.Connection) {
    conn.send(JSON.stringify({ type: "count", count: await this.read() }));
  }

  async onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection) {
    if (message !== "increment") {
      sender.send(JSON.stringify({ type: "error", error: "the counter takes one message: increment" }));
      return;
    }
    const count = (await this.read()) + 1;
    await this.room.storage.put("count", count);
    this.room.broadcast(JSON.stringify({ type: "count", count }));
  }

  async onRequest(req: Party.Request) {
    if (req.method === "POST") {
      const count = (await this.read()) + 1;
      await this.room.storage.put("count", count);
      this.room.broadcast(JSON.stringify({ type: "count", count }));
      return Response.json({ room: this.room.id, count });
    }
    if (req.method === "GET") {
      return Response.json({ room: this.room.id, count: await this.read() });
    }
    return new Response("method not allowed", { status: 405 });
  }
}
