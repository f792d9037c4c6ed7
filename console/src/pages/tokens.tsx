// API tokens: make one (its secret is shown once, here), revoke one.

import { useState } from "preact/hooks";
import { del, get, post, Session, may } from "../api";
import { Card, ConfirmButton, ErrorBox, Loading, StateBadge, Time, useLoad } from "../ui";

interface Token {
  id: string;
  role: string;
  tools: string[] | null;
  name: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  live: boolean;
}

function NewToken({ onDone }: { onDone: () => void }) {
  const [role, setRole] = useState("viewer");
  const [name, setName] = useState("");
  const [tools, setTools] = useState("");
  const [expires, setExpires] = useState("");
  const [made, setMade] = useState<{ id: string; token_secret: string } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const body: Record<string, unknown> = { role };
      if (name.trim()) body.name = name.trim();
      if (expires.trim()) body.expires = expires.trim();
      if (role === "tool") body.tools = tools.split(",").map((t) => t.trim()).filter(Boolean);
      setMade(await post("/api/tokens", body));
      setName("");
      setTools("");
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <form class="inline-form" onSubmit={submit} aria-label="Make a token">
        <label>
          Role{" "}
          <select value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value)}>
            {["viewer", "operator", "editor", "admin", "tool"].map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Label <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="who it is for" />
        </label>
        {role === "tool" && (
          <label>
            Tools <input value={tools} onInput={(e) => setTools((e.target as HTMLInputElement).value)} placeholder="order_status, kb_search" required />
          </label>
        )}
        <label>
          Expires after <input value={expires} onInput={(e) => setExpires((e.target as HTMLInputElement).value)} placeholder="30d (empty: never)" size={14} />
        </label>
        <button class="primary" type="submit">
          Make token
        </button>
      </form>
      <ErrorBox error={error} />
      {made && (
        <div class="shown-once" role="status">
          <p>
            Token <code>{made.id}</code> is made. Copy its secret now: it is shown only this once.
          </p>
          <input class="mono secret" readOnly value={made.token_secret} onFocus={(e) => (e.target as HTMLInputElement).select()} aria-label="The new token's secret" />
        </div>
      )}
    </>
  );
}

export function Tokens({ session }: { session: Session }) {
  const { data, error, reload } = useLoad(() => get<{ tokens: Token[] }>("/api/tokens"), []);
  if (!may(session, "admin")) return <ErrorBox error="Only admin tokens manage tokens." />;
  return (
    <>
      <h1>API tokens</h1>
      <Card title="Make a token">
        <NewToken onDone={reload} />
      </Card>
      <ErrorBox error={error} />
      {!data && !error && <Loading />}
      {data && (
        <Card>
          <table class="list">
            <thead>
              <tr>
                <th>Token</th>
                <th>Role</th>
                <th>Label</th>
                <th>Made</th>
                <th>Expires</th>
                <th>State</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {data.tokens.map((t) => (
                <tr>
                  <td class="mono">{t.id}</td>
                  <td>
                    {t.role}
                    {t.tools && <div class="small muted">{t.tools.join(", ")}</div>}
                  </td>
                  <td>{t.name ?? <span class="muted">—</span>}</td>
                  <td>
                    <Time at={t.created_at} />
                  </td>
                  <td>
                    <Time at={t.expires_at} />
                  </td>
                  <td>
                    <StateBadge state={t.live ? "live" : t.revoked_at ? "revoked" : "expired"} />
                  </td>
                  <td>
                    {t.live && (
                      <ConfirmButton
                        label="Revoke"
                        kind="danger"
                        question={`Revoke ${t.id}${t.id === session.token_id ? ", the token of this session (you will be signed out)" : ""}? Requests with it, and console sessions signed in with it, stop working at once.`}
                        onConfirm={async () => {
                          await del(`/api/tokens/${encodeURIComponent(t.id)}`);
                          reload();
                        }}
                      />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Card>
      )}
    </>
  );
}
