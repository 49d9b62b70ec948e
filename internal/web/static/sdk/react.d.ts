// TypeScript declarations for /sdk/react.js.
import type { ConnectionQuality, ConnectionState, OutboxItem, Parley, ParleyEvent, ParleyOptions } from "./parley.js";

/** The parts of React the hooks use (pass your React module). */
export interface ReactLike {
  useState: any;
  useEffect: any;
  useRef: any;
}

export interface UseParleyResult {
  parley: Parley;
  state: ConnectionState;
  quality: ConnectionQuality;
  outbox: OutboxItem[];
  lastEventId: number | null;
}

export interface ParleyHooks {
  /** Options: an instance is created, connected on mount and closed on unmount. An instance: only subscribed to. */
  useParley(optionsOrInstance?: ParleyOptions | Parley): UseParleyResult;
  useParleyEvent(parley: Parley | null | undefined, type: string, handler: (data: any, event: ParleyEvent<any>) => void): void;
  useParleyState(parley: Parley | null | undefined): ConnectionState;
  useParleyQuality(parley: Parley | null | undefined): ConnectionQuality;
  useParleyOutbox(parley: Parley | null | undefined, conversationId?: string): OutboxItem[];
}

export declare function createParleyHooks(React: ReactLike): ParleyHooks;
export declare function useParley(React: ReactLike, optionsOrInstance?: ParleyOptions | Parley): UseParleyResult;
