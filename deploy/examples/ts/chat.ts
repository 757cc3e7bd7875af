// The seed's ChatRoom (SEED-partykit-skill.txt, "Use hibernation-compatible handlers"), with hibernation on, its
// typed protocol ("Parse and validate messages") and its history in storage ("Persist critical state to storage").
// Run it with partyd: {"parties": {"main": {"script": "./chat.ts"}}} — docs/javascript.md.
import type * as Party from "partykit/server";

type ClientMessage =
  | { type: "chat"; content: string }
  | { type: "cursor"; x: number; y: number }
  | { type: "join"; name: string };

interface ChatMessage {
  content: string;
  senderId: string;
  timestamp: number;
}

function parseMessage(raw: string): ClientMessage | null {
  try {
    const data = JSON.parse(raw);
    if (data.type === "chat" && typeof data.content === "string") return data;
    if (data.type === "cursor" && typeof data.x === "number") return data;
    if (data.type === "join" && typeof data.name === "string") return data;
    return null;
  } catch {
    return null;
  }
}

export default class ChatRoom implements Party.Server {
  static options = { hibernate: true };

  constructor(readonly room: Party.Room) {}

  onConnect(conn: Party.Connection) {
    conn.send(JSON.stringify({ type: "welcome", id: conn.id }));
  }

  async onMessage(message: string, sender: Party.Connection) {
    const msg = parseMessage(message);
    if (msg?.type === "chat") {
      const messages = (await this.room.storage.get<ChatMessage[]>("messages")) ?? [];
      messages.push({ content: msg.content, senderId: sender.id, timestamp: Date.now() });
      await this.room.storage.put("messages", messages);
      this.room.broadcast(JSON.stringify({ type: "chat", ...messages.at(-1) }));
    } else {
      this.room.broadcast(message, [sender.id]);
    }
  }

  onClose(conn: Party.Connection) {
    this.room.broadcast(JSON.stringify({ type: "user-left", id: conn.id }));
  }
}
