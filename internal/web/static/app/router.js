// The URL says what is open: /?c=<conversation id>, /?view=directory,
// /?view=profile, or / for the list. Opening something pushes a history entry,
// so reload keeps the conversation and back/forward move between them.

import { S } from "./state.js";

/** The route in the address bar: { c, view }. */
export function currentRoute() {
  const q = new URLSearchParams(location.search);
  return { c: q.get("c") || null, view: q.get("view") || null };
}

function urlOf(route) {
  const q = new URLSearchParams();
  if (route.c) q.set("c", route.c);
  else if (route.view) q.set("view", route.view);
  const qs = q.toString();
  return `/${qs ? `?${qs}` : ""}`;
}

function same(a, b) {
  return (a.c || null) === (b.c || null) && (a.view || null) === (b.view || null);
}

/** Records a newly opened screen as a history entry (no-op if already there). */
export function pushRoute(route) {
  if (same(route, currentRoute())) return;
  history.pushState({ parley: true }, "", urlOf(route));
}

/** Changes the address without a history entry (e.g. a conversation that no longer exists). */
export function replaceRoute(route) {
  if (same(route, currentRoute())) return;
  history.replaceState({ parley: true }, "", urlOf(route));
}

/** Calls fn(route) on back/forward while signed in. */
export function onRouteChange(fn) {
  window.addEventListener("popstate", () => {
    if (S.me) fn(currentRoute());
  });
}
