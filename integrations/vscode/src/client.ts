// The Chime IDE protocol client (integrations/ide/PROTOCOL.md, v1). No `vscode` import here, so
// that node's test runner can test it against a real `chime serve`.
//
// Every message gets an id and is kept until Chime acknowledges it; after a reconnect, whatever
// is still unacknowledged is sent again, in order. Chime deduplicates on the token and the id,
// so nothing is lost or doubled.

import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import WebSocket from "ws";

export const PROTOCOL_VERSION = 1;

export interface ClientOptions {
  /** `ws://host:port/ide/stream` */
  url: string;
  /** From `chime ide-token create`. */
  token: string;
  /** First reconnect delay; it doubles up to 30 s. */
  reconnectMs?: number;
}

export interface Outgoing {
  type: string;
  [field: string]: unknown;
}

export interface Incoming {
  v: number;
  type: string;
  id?: string;
  [field: string]: unknown;
}

/**
 * Events: `open`, `ack` (id), `refused` (HTTP status: the token or request was refused, no
 * retry), `revoked` (the token was revoked while connected, no retry), `error_message` (Chime's
 * `error`), `message` (anything else Chime sends: `suggestion`, `session_update`, `result`),
 * `close`.
 */
export class ChimeClient extends EventEmitter {
  private socket?: WebSocket;
  /** Unacknowledged messages by id, in the order they were sent. */
  private readonly pending = new Map<string, Incoming>();
  private stopped = false;
  private delay: number;
  /** The `seq` of the last Chime message seen: sent in each `hello`, so nothing is missed. */
  lastSeq?: number;
  private timer?: NodeJS.Timeout;

  constructor(private readonly options: ClientOptions) {
    super();
    this.delay = options.reconnectMs ?? 500;
  }

  /** Connects, and keeps reconnecting until `close()` or a refusal. */
  connect(): void {
    if (this.stopped) return;
    const socket = new WebSocket(this.options.url, {
      headers: { Authorization: `Bearer ${this.options.token}` },
      maxPayload: 1024 * 1024,
    });
    this.socket = socket;
    socket.on("open", () => {
      this.delay = this.options.reconnectMs ?? 500;
      this.emit("open");
      for (const message of this.pending.values()) socket.send(JSON.stringify(message));
    });
    socket.on("unexpected-response", (_request, response) => {
      // 401 (token), 403 (a web page), 400: retrying would not help.
      this.stopped = true;
      this.emit("refused", response.statusCode ?? 0);
      socket.terminate();
    });
    socket.on("message", (data) => this.receive(String(data)));
    socket.on("close", (code) => {
      this.socket = undefined;
      this.emit("close", code);
      if (code === 4001) {
        this.stopped = true;
        this.emit("revoked");
        return;
      }
      this.scheduleReconnect();
    });
    socket.on("error", () => {
      // `close` follows and schedules the reconnect.
    });
  }

  /** Sends a message (now, or on the next connection); returns its id. */
  send(message: Outgoing): string {
    const id = randomUUID();
    const full: Incoming = { ...message, v: PROTOCOL_VERSION, id };
    if (message.type === "hello" && this.lastSeq !== undefined) full.last_seq = this.lastSeq;
    this.pending.set(id, full);
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(full));
    return id;
  }

  /** How many messages wait for Chime's acknowledgement. */
  get unacknowledged(): number {
    return this.pending.size;
  }

  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close(1000);
  }

  private receive(text: string): void {
    let message: Incoming;
    try {
      message = JSON.parse(text) as Incoming;
    } catch {
      return;
    }
    if (typeof message.seq === "number") {
      // Chime sends its queue in order; anything at or before what was seen is a repeat.
      if (this.lastSeq !== undefined && message.seq <= this.lastSeq) return;
      this.lastSeq = message.seq;
    }
    if (message.type === "ack" && typeof message.id === "string") {
      this.pending.delete(message.id);
      this.emit("ack", message.id);
    } else if (message.type === "error") {
      // Chime refused that message for good: sending it again would be refused again.
      if (typeof message.id === "string") this.pending.delete(message.id);
      this.emit("error_message", message);
    } else {
      this.emit("message", message);
    }
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 30_000);
  }
}
