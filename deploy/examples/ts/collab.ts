// The seed's CollabRoom (SEED-partykit-skill.txt, "Full Server with Storage and Presence"), as written there.
// Run it with partyd: {"parties": {"collab": {"script": "./collab.ts"}}} — docs/javascript.md.
import type { Party, Connection } from "partykit/server";

interface User {
  id: string;
  name: string;
  cursor: { x: number; y: number } | null;
}

export default class CollabRoom implements Party.Server {
  users: Map<string, User> = new Map();

  constructor(readonly room: Party.Room) {}

  async onStart() {
    const stored = await this.room.storage.get<[string, User][]>("users");
    if (stored) this.users = new Map(stored);
  }

  onConnect(conn: Connection) {
    conn.send(JSON.stringify({ type: "state", users: Array.from(this.users.values()) }));
  }

  async onMessage(message: string, sender: Connection) {
    const msg = JSON.parse(message);

    switch (msg.type) {
      case "join": {
        const user: User = { id: sender.id, name: msg.name, cursor: null };
        this.users.set(sender.id, user);
        await this.room.storage.put("users", Array.from(this.users.entries()));
        this.room.broadcast(JSON.stringify({ type: "user-joined", user }));
        break;
      }
      case "cursor": {
        const u = this.users.get(sender.id);
        if (u) u.cursor = { x: msg.x, y: msg.y };
        this.room.broadcast(JSON.stringify({ type: "cursor", id: sender.id, x: msg.x, y: msg.y }), [sender.id]);
        break;
      }
    }
  }

  async onClose(conn: Connection) {
    this.users.delete(conn.id);
    await this.room.storage.put("users", Array.from(this.users.entries()));
    this.room.broadcast(JSON.stringify({ type: "user-left", id: conn.id }));
  }
}
