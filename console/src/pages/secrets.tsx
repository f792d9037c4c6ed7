// The secret store by name: set or replace a value (it is never shown back), delete one.

import { useState } from "preact/hooks";
import { del, get, put, Session, may } from "../api";
import { Card, ConfirmButton, Empty, ErrorBox, Loading, Time, useLoad } from "../ui";

interface Secret {
  name: string;
  created_at: number;
  updated_at: number;
  key_id: string;
}

function SetSecret({ onDone, name: fixed }: { onDone: () => void; name?: string }) {
  const [name, setName] = useState(fixed ?? "");
  const [value, setValue] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await put(`/api/secrets/${encodeURIComponent(name.trim())}`, { value });
      setValue("");
      if (!fixed) setName("");
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label={fixed ? `Replace ${fixed}` : "Set a secret"}>
      {!fixed && (
        <label>
          Name <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} required placeholder="shop_token" />
        </label>
      )}
      <label>
        Value <input type="password" autoComplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} required />
      </label>
      <button class="primary" type="submit" disabled={busy || !name.trim() || !value}>
        {fixed ? "Replace" : "Set"}
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

export function Secrets({ session }: { session: Session }) {
  const { data, error, reload } = useLoad(() => get<{ secrets: Secret[] }>("/api/secrets"), []);
  if (!may(session, "admin")) return <ErrorBox error="Only admin tokens manage secrets." />;
  return (
    <>
      <h1>Secrets</h1>
      <p class="muted small">Values are encrypted in the store and never shown again. Connections refer to them as {"{ secret: NAME }"}.</p>
      <Card title="Set a secret">
        <SetSecret onDone={reload} />
      </Card>
      <ErrorBox error={error} />
      {!data && !error && <Loading />}
      {data && (
        <Card>
          {data.secrets.length === 0 ? (
            <Empty>The secret store is empty.</Empty>
          ) : (
            <table class="list">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Set</th>
                  <th>Replace</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {data.secrets.map((s) => (
                  <tr>
                    <td class="mono">{s.name}</td>
                    <td>
                      <Time at={s.updated_at} />
                    </td>
                    <td>
                      <SetSecret name={s.name} onDone={reload} />
                    </td>
                    <td>
                      <ConfirmButton
                        label="Delete"
                        kind="danger"
                        question={`Delete the secret ${s.name}? Connections that use it stop working.`}
                        onConfirm={async () => {
                          await del(`/api/secrets/${encodeURIComponent(s.name)}`);
                          reload();
                        }}
                      />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Card>
      )}
    </>
  );
}
