// The overview: how the last 24 hours went, what is failing, what waits for a person, how deep
// the queue is, and how each trigger that reaches outside is doing.

import { get, Session } from "../api";
import { href } from "../route";
import { ago, Card, Empty, ErrorBox, Loading, StateBadge, useLoad } from "../ui";

export interface Overview {
  since: string;
  runs_by_state: Record<string, number>;
  failing_workflows: { workflow: string; failed: number; total: number; last_error: string | null; last_failed_run: string | null }[];
  pending_approvals: number;
  unfinished: { queued: number; running: number; waiting: number; oldest_queued_at: string | null };
  triggers: { workflow: string; type: string; last_success: string | null; last_error: string | null; last_error_at: string | null }[];
}

const ORDER = ["succeeded", "failed", "running", "waiting", "queued", "cancelled"];

export function Overview(_: { session: Session }) {
  const { data, error } = useLoad(() => get<Overview>("/api/overview"), []);
  if (error) return <ErrorBox error={error} />;
  if (!data) return <Loading />;
  return (
    <>
      <h1>Overview</h1>
      <div class="tiles">
        {ORDER.map((s) => (
          <a class={`tile state-${s}`} href={`#/runs?state=${s}`}>
            <span class="figure">{data.runs_by_state[s] ?? 0}</span>
            <span class="label">{s}</span>
          </a>
        ))}
      </div>
      <p class="small muted">Runs created in the last 24 hours, by state.</p>
      <div class="split even">
        <Card title="Failing workflows">
          {data.failing_workflows.length === 0 ? (
            <Empty>No workflow failed in the last 24 hours.</Empty>
          ) : (
            <table class="list">
              <tbody>
                {data.failing_workflows.map((f) => (
                  <tr>
                    <td>
                      <a href={href("workflows", f.workflow)}>{f.workflow}</a>
                    </td>
                    <td>
                      <StateBadge state="failed" /> {f.failed} of {f.total}
                    </td>
                    <td class="small error-text">
                      {f.last_failed_run ? <a href={href("runs", f.last_failed_run)}>{f.last_error ?? "failed"}</a> : f.last_error}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Card>
        <Card title="Waiting">
          <p>
            <a href="#/approvals">
              <strong>{data.pending_approvals}</strong> pending approval{data.pending_approvals === 1 ? "" : "s"}
            </a>
          </p>
          <p>
            <strong>{data.unfinished.queued}</strong> queued · <strong>{data.unfinished.running}</strong> running · <strong>{data.unfinished.waiting}</strong> waiting
          </p>
          {data.unfinished.oldest_queued_at && <p class="small muted">oldest queued run: {ago(data.unfinished.oldest_queued_at)}</p>}
        </Card>
      </div>
      <Card title="Triggers">
        {data.triggers.length === 0 ? (
          <Empty>No webhook, poll or queue trigger.</Empty>
        ) : (
          <table class="list">
            <thead>
              <tr>
                <th>Workflow</th>
                <th>Trigger</th>
                <th>Last run started</th>
                <th>Last error</th>
              </tr>
            </thead>
            <tbody>
              {data.triggers.map((t) => (
                <tr>
                  <td>
                    <a href={href("workflows", t.workflow)}>{t.workflow}</a>
                  </td>
                  <td>
                    <span class="chip">{t.type}</span>
                  </td>
                  <td>{ago(t.last_success)}</td>
                  <td class="small error-text">{t.last_error ? `${ago(t.last_error_at)}: ${t.last_error}` : <span class="muted">none</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
    </>
  );
}
