// The project's connections: type, settings as written (credentials only as references), the
// workflows that use each, "Test connection" where the connector can check itself, and "Connect"
// for connections that sign in with OAuth2 (the hub serves the provider's redirect).

import { useEffect, useState } from "preact/hooks";
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
  /// Where a connection that signs in (OAuth2 authorization code) stands.
  sign_in?: SignInState;
}

interface SignInState {
  state: "connected" | "not_connected" | "needs_sign_in";
  reason?: string;
  expires_at?: string;
}

interface Started {
  authorize_url: string;
  redirect_uri: string;
  expires_in: number;
}

const SIGN_IN_TEXT: Record<SignInState["state"], string> = {
  connected: "Connected",
  not_connected: "Not connected",
  needs_sign_in: "Needs sign-in",
};

/// Where a connection that signs in stands, and (for admins) the way to sign it in: the hub makes
/// a one-time sign-in address; the person opens it, signs in at the provider, and the provider
/// sends them back to the hub. The page then sees the connection connected.
function SignIn({ connection, admin, reload }: { connection: Connection; admin: boolean; reload: () => void }) {
  const state = connection.sign_in!;
  const [started, setStarted] = useState<Started | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  // While a sign-in is under way, look every two seconds whether it completed.
  useEffect(() => {
    if (!started) return;
    const timer = setInterval(reload, 2000);
    return () => clearInterval(timer);
  }, [started]);
  useEffect(() => {
    if (state.state === "connected") setStarted(null);
  }, [state.state, state.expires_at]);
  const connect = async () => {
    setBusy(true);
    setError(null);
    try {
      setStarted(await post<Started>(`/api/connections/${encodeURIComponent(connection.name)}/connect`));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const cls = state.state === "connected" ? "test-ok" : "test-bad";
  return (
    <div class="connection-test">
      <p class={cls} role="status">
        <strong>{SIGN_IN_TEXT[state.state]}</strong>
        {state.state === "connected" && state.expires_at && <span> · access token until {new Date(state.expires_at).toLocaleString()}</span>}
        {state.state === "needs_sign_in" && state.reason && <span>: {state.reason}</span>}
      </p>
      {admin && (
        <button type="button" onClick={connect} disabled={busy}>
          {state.state === "connected" ? "Sign in again" : "Connect"}
        </button>
      )}
      {!admin && state.state !== "connected" && <span class="muted small">An admin signs this connection in.</span>}
      <ErrorBox error={error} />
      {started && (
        <p class="small">
          <a href={started.authorize_url} target="_blank" rel="noopener noreferrer">
            Open the sign-in page
          </a>{" "}
          <span class="muted">(valid {Math.round(started.expires_in / 60)} minutes; the provider returns to {started.redirect_uri}). Waiting for the sign-in…</span>
        </p>
      )}
    </div>
  );
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
  const { data, error, reload } = useLoad(() => get<{ connections: Connection[] }>("/api/connections"), []);
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
          {c.sign_in && <SignIn connection={c} admin={may(session, "admin")} reload={reload} />}
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
