// The project's connections: type, settings as written (credentials only as references), the
// workflows that use each, and "Test connection" where the connector can check itself.

import { useState } from "preact/hooks";
import { get, may, post, type Session } from "../api";
import { href } from "../route";
import { Card, Empty, ErrorBox, Json, Loading, useLoad } from "../ui";

interface Connection {
  name: string;
  type: string;
  settings: unknown;
  used_by: string[];
  defined_at: string;
  /// What the check does, when the connector can check itself.
  probe?: string;
}

interface TestResult {
  ok: boolean;
  message: string;
  retryable: boolean;
  elapsed_ms: number;
}

/// Asks the hub to check a connection, and says what it found.
function TestConnection({ connection }: { connection: Connection }) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<TestResult | null>(null);
  const [error, setError] = useState<unknown>(null);
  const test = async () => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      setResult(await post<TestResult>(`/api/connections/${encodeURIComponent(connection.name)}/test`));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="connection-test">
      <button type="button" onClick={test} disabled={busy} title={`The hub ${connection.probe}`}>
        {busy ? "Testing…" : "Test connection"}
      </button>
      <span class="muted small">The hub {connection.probe}.</span>
      <ErrorBox error={error} />
      {result && (
        <p class={result.ok ? "test-ok" : "test-bad"} role="status">
          <strong>{result.ok ? "Works" : "Does not work"}</strong> ({result.elapsed_ms} ms): {result.message}
          {!result.ok && result.retryable && <span class="muted"> — may be passing; try again later.</span>}
        </p>
      )}
    </div>
  );
}

export function Connections({ session }: { session: Session }) {
  const { data, error } = useLoad(() => get<{ connections: Connection[] }>("/api/connections"), []);
  return (
    <>
      <h1>Connections</h1>
      <p class="muted small">Connections are defined in weft.yaml; credentials are references to the secret store or the environment, never values.</p>
      <ErrorBox error={error} />
      {!data && !error && <Loading />}
      {data && data.connections.length === 0 && <Empty>The project has no connections.</Empty>}
      {data?.connections.map((c) => (
        <Card class="connection">
          <div class="page-head">
            <h2>{c.name}</h2>
            <span class="chip">{c.type}</span>
            <span class="muted small">{c.defined_at}</span>
          </div>
          <p class="small">
            Used by:{" "}
            {c.used_by.length === 0 ? (
              <span class="muted">no workflow</span>
            ) : (
              c.used_by.map((w, i) => (
                <>
                  {i > 0 && ", "}
                  <a href={href("workflows", w)}>{w}</a>
                </>
              ))
            )}
          </p>
          {c.probe && may(session, "operate") && <TestConnection connection={c} />}
          <details>
            <summary class="small">Settings</summary>
            <Json value={c.settings} label={`Settings of ${c.name}`} />
          </details>
        </Card>
      ))}
    </>
  );
}
