// cao-sidecar's OpenCode plugin: reports the agent's own status to the sidecar (events beat screens).
//
// Loaded by path (`plugin: ["file://…/opencode_plugin.js"]` in the config the sidecar generates).
// It imports nothing: a plugin with imports (or a plugin directory) makes OpenCode install
// `@opencode-ai/plugin` at start, which hangs without network. It POSTs small JSON events to
// `<CAO_MCP_URL without /mcp>/hooks/opencode` with the agent's own token (`CAO_MCP_TOKEN` from
// the environment the sidecar gave OpenCode; never written here), in order, and never throws:
//   {hook_event_name: "busy"}                                  a turn started or goes on
//   {hook_event_name: "permission"}                            OpenCode asks for a permission
//   {hook_event_name: "idle", input, answer, error}            the turn is over: the user's text,
//                                                              the last answer's text, an error
// Child sessions (sub-agents) are not reported: only the sessions the user talks to.

export const CaoSidecarEvents = async () => {
  const base = (process.env.CAO_MCP_URL || "").replace(/\/mcp\/?$/, "")
  const token = process.env.CAO_MCP_TOKEN || ""
  if (!base || !token) return {}
  const url = `${base}/hooks/opencode`
  let queue = Promise.resolve()
  const post = (body) => {
    queue = queue
      .then(() =>
        fetch(url, {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        }),
      )
      .catch(() => {})
  }

  const messages = new Map() // id -> {role, sessionID, parentID}
  const texts = new Map() // message id -> Map(part id -> text)
  const lastUser = new Map() // session id -> user message id
  const children = new Set() // sub-agent session ids
  const errors = new Map() // session id -> error text of the current turn

  const textOf = (messageID) => {
    const parts = texts.get(messageID)
    if (!parts) return ""
    return [...parts.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, t]) => t).join("\n").trim()
  }
  const answerOf = (sessionID) => {
    const user = lastUser.get(sessionID)
    let best = ""
    let bestID = ""
    for (const [id, info] of messages) {
      if (info.sessionID === sessionID && info.role === "assistant" && info.parentID === user && id > bestID) {
        const text = textOf(id)
        if (text) {
          best = text
          bestID = id
        }
      }
    }
    return best
  }

  return {
    event: async ({ event }) => {
      try {
        const p = event.properties || {}
        const sessionID = p.sessionID || (p.info && p.info.sessionID) || ""
        switch (event.type) {
          case "session.created":
          case "session.updated":
            if (p.info && p.info.parentID) children.add(p.info.id)
            return
          case "message.updated": {
            const info = p.info || {}
            messages.set(info.id, { role: info.role, sessionID: info.sessionID, parentID: info.parentID })
            if (info.role === "user" && !children.has(info.sessionID)) {
              lastUser.set(info.sessionID, info.id)
              errors.delete(info.sessionID)
            }
            return
          }
          case "message.part.updated": {
            const part = p.part || {}
            if (part.type !== "text" || part.synthetic || part.ignored) return
            if (!texts.has(part.messageID)) texts.set(part.messageID, new Map())
            texts.get(part.messageID).set(part.id, part.text || "")
            return
          }
          case "session.status":
            if (!children.has(sessionID) && p.status && p.status.type === "busy") post({ hook_event_name: "busy" })
            return
          case "permission.asked":
          case "permission.updated":
            post({ hook_event_name: "permission" })
            return
          case "session.error":
            if (!children.has(sessionID)) {
              const err = p.error || {}
              errors.set(sessionID, String((err.data && err.data.message) || err.name || "error"))
            }
            return
          case "session.idle": {
            if (children.has(sessionID)) return
            const user = lastUser.get(sessionID)
            post({
              hook_event_name: "idle",
              input: user ? textOf(user) : "",
              answer: answerOf(sessionID),
              error: errors.get(sessionID) || null,
            })
            return
          }
        }
      } catch (e) {
        // a plugin must never break OpenCode
      }
    },
  }
}
