// The anchor's relay party: the same room logic as partyd's built-in "relay" kind, written the way PartyKit's
// documentation writes it. Every WebSocket message goes unchanged to every other connection of the room; nothing
// goes back to the sender.
//   GET  -> 200 {"party":"relay","room":ID,"connections":N}   (tests/bench/sidebyside.sh polls it for readiness)
//   POST -> the body to every connection; 200 {"delivered":N}
//   else -> 405
import type * as Party from "partykit/server";

export default class Relay implements Party.Server {
  constructor(readonly room: Party.Room) {}

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection) {
    this.room.broadcast(message, [sender.id]);
  }

  async onRequest(req: Party.Request) {
    if (req.method === "GET") {
      return Response.json({ party: "relay", room: this.room.id, connections: this.count() });
    }
    if (req.method === "POST") {
      const body = await req.arrayBuffer();
      let message: string | ArrayBuffer = body;
      try {
        message = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body);
      } catch {
        // not UTF-8: sent as a binary frame
      }
      const delivered = this.count();
      this.room.broadcast(message);
      return Response.json({ delivered });
    }
    return new Response("method not allowed", { status: 405 });
  }

  private count(): number {
    let n = 0;
    for (const _ of this.room.getConnections()) n++;
    return n;
  }
}
