// The seed's HTTP state room (SEED-partykit-skill.txt, "HTTP Request Handling"), as written there.
// Run it with partyd: {"parties": {"state": {"script": "./http_state.ts"}}} — docs/javascript.md.
import type * as Party from "partykit/server";

export default class MyRoom implements Party.Server {
  constructor(readonly room: Party.Room) {}

  async onRequest(req: Party.Request) {
    if (req.method === "GET") {
      const state = await this.room.storage.get("state");
      return new Response(JSON.stringify(state), {
        headers: { "Content-Type": "application/json" },
      });
    }

    if (req.method === "POST") {
      const body = await req.json();
      await this.room.storage.put("state", body);
      this.room.broadcast(JSON.stringify({ type: "state-updated", ...body }));
      return new Response("OK", { status: 200 });
    }

    return new Response("Method not allowed", { status: 405 });
  }
}
