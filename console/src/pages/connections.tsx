// The project's connections: type, settings as written (credentials only as references), and
// the workflows that use each.

import { get } from "../api";
import { href } from "../route";
import { Card, Empty, ErrorBox, Json, Loading, useLoad } from "../ui";

interface Connection {
  name: string;
  type: string;
  settings: unknown;
  used_by: string[];
  defined_at: string;
}

export function Connections() {
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
          <details>
            <summary class="small">Settings</summary>
            <Json value={c.settings} label={`Settings of ${c.name}`} />
          </details>
        </Card>
      ))}
    </>
  );
}
