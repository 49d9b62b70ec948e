// The browser side: the app's page gets a Parley token from its own
// backend and hands it to Parley's SDK, served by Parley itself.
const $ = (id) => document.getElementById(id);
let parley, conversationId;

$("start").onclick = async () => {
  const session = await (await fetch("/session", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user: $("who").value }) })).json();
  const { Parley } = await import(`${session.parley_url}/sdk/parley.js`);
  parley?.close();
  parley = new Parley({ baseUrl: session.parley_url, token: session.parley_token });
  const show = (m) => {
    const li = document.createElement("li");
    const who = m.kind === "system" ? "System" : m.sender_id === parley.userId ? "You" : "Them";
    li.textContent = `${who}: ${m.deleted ? "(deleted)" : m.body}`;
    $("messages").append(li);
  };
  parley.on("message.created", show);
  parley.on("session.expired", () => alert("Signed out of the chat: sign in again."));
  parley.connect();
  const convs = await parley.conversations();
  if (convs.length) conversationId = convs[0].id;
  else if (session.user.role === "client") {
    // Clients open a conversation with a professional by the app's own id.
    const c = await parley.createConversation({ professional_external_id: "p-200", subject: "Booking", body: "Hello!" });
    conversationId = c.id;
  }
  for (const m of conversationId ? (await parley.messages(conversationId)).messages : []) show(m);
};

$("send").onsubmit = async (e) => {
  e.preventDefault();
  if (!parley || !conversationId || !$("body").value.trim()) return;
  await parley.send(conversationId, $("body").value);
  $("body").value = "";
};
