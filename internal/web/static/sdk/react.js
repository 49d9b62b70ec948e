// React bindings for the Parley SDK, served at /sdk/react.js.
//
// This module does not import "react" (a browser loading it from the Parley
// server has no bundler to resolve that name); you pass your React in:
//
//   import React from "react";
//   import { Parley } from "/sdk/parley.js";           // or your bundler's copy
//   import { createParleyHooks } from "/sdk/react.js";
//   const { useParley, useParleyEvent } = createParleyHooks(React);
//
//   function Chat() {
//     const { parley, state, quality, outbox } = useParley({ baseUrl: "" }); // creates, connects, closes
//     useParleyEvent(parley, "message.created", (msg) => { /* … */ });
//     return <p>{state} ({quality}), {outbox.length} sending</p>;
//   }
//
// useParley(x) takes either Parley options (an instance is created once,
// connected on mount and closed on unmount) or an existing Parley instance (only
// subscribed to; you own connect/close). The shorthand useParley(React, x) is
// exported too.

import { Parley } from "./parley.js";

/** Returns { useParley, useParleyEvent, useParleyState, useParleyOutbox } bound to the given React. */
export function createParleyHooks(React) {
  if (!React || typeof React.useState !== "function") throw new TypeError("createParleyHooks(React): pass the React module");
  const { useEffect, useRef, useState } = React;

  function useInstance(arg) {
    const ref = useRef(null);
    const owned = !(arg instanceof Parley);
    if (ref.current == null) ref.current = owned ? new Parley(arg || {}) : arg;
    if (!owned && ref.current !== arg) ref.current = arg;
    useEffect(() => {
      if (!owned) return undefined;
      const p = ref.current;
      p.connect();
      return () => p.close();
    }, [owned]);
    return ref.current;
  }

  /** The connection state, re-rendering on change. */
  function useParleyState(parley) {
    const [state, setState] = useState(parley ? parley.state : "disconnected");
    useEffect(() => {
      if (!parley) return undefined;
      setState(parley.state);
      return parley.onState(setState);
    }, [parley]);
    return state;
  }

  function useParleyQuality(parley) {
    const [q, setQ] = useState(parley ? parley.quality : "offline");
    useEffect(() => {
      if (!parley) return undefined;
      setQ(parley.quality);
      return parley.onQuality(setQ);
    }, [parley]);
    return q;
  }

  /** Outbox items (optionally of one conversation), re-rendering on change. */
  function useParleyOutbox(parley, conversationId) {
    const pick = (items) => (conversationId == null ? items : items.filter((i) => i.conversation_id === conversationId));
    const [items, setItems] = useState(() => (parley ? pick(parley.outbox) : []));
    useEffect(() => {
      if (!parley) return undefined;
      setItems(pick(parley.outbox));
      return parley.onOutbox((all) => setItems(pick(all)));
      // eslint-disable-next-line react-hooks/exhaustive-deps
    }, [parley, conversationId]);
    return items;
  }

  /** Calls handler(data, event) for each event of `type`; the latest handler is always used. */
  function useParleyEvent(parley, type, handler) {
    const ref = useRef(handler);
    ref.current = handler;
    useEffect(() => {
      if (!parley) return undefined;
      return parley.on(type, (data, ev) => ref.current && ref.current(data, ev));
    }, [parley, type]);
  }

  /** { parley, state, quality, outbox } for options (owned instance) or a Parley instance. */
  function useParley(arg) {
    const parley = useInstance(arg);
    const state = useParleyState(parley);
    const quality = useParleyQuality(parley);
    const outbox = useParleyOutbox(parley);
    return { parley, state, quality, outbox, lastEventId: parley.lastEventId };
  }

  return { useParley, useParleyEvent, useParleyState, useParleyQuality, useParleyOutbox };
}

/** Shorthand: useParley(React, optionsOrInstance). */
export function useParley(React, arg) {
  return createParleyHooks(React).useParley(arg);
}
