// The workflows of the project: trigger, last run, next schedule slot.

import { get, may, query, RunPage, Session, WorkflowSummary } from "../api";
import { href } from "../route";
import { ago, Card, ErrorBox, Loading, StateBadge, useLoad } from "../ui";

export function triggerLabel(t: WorkflowSummary["trigger"]): string {
  switch (t.type) {
    case "webhook":
      return `webhook ${t.url}`;
    case "schedule":
      return `schedule ${t.cron}`;
    case "poll":
      return `poll ${t.uses} every ${t.every}`;
    case "queue":
      return `queue ${t.connection}`;
    default:
      return String(t.type);
  }
}

function LastRun({ workflow }: { workflow: string }) {
  const { data } = useLoad(() => get<RunPage>(`/api/runs${query({ workflow, limit: 1 })}`), [workflow]);
  const run = data?.runs[0];
  if (!data) return <span class="muted">…</span>;
  if (!run) return <span class="muted">no runs yet</span>;
  return (
    <a href={href("runs", run.id)}>
      <StateBadge state={run.state} /> {ago(run.created_at)}
    </a>
  );
}

export function WorkflowList({ session }: { session: Session }) {
  const { data, error } = useLoad(() => get<{ workflows: WorkflowSummary[] }>("/api/workflows"), []);
  return (
    <>
      <div class="page-head">
        <h1>Workflows</h1>
        <div class="grow" />
        {may(session, "edit") && (
          <a class="button primary" href="#/new">
            New workflow
          </a>
        )}
      </div>
      <ErrorBox error={error} />
      {!data && !error && <Loading />}
      {data && (
        <Card>
          <table class="list">
            <thead>
              <tr>
                <th>Name</th>
                <th>Trigger</th>
                <th>Last run</th>
                <th>Next slot</th>
              </tr>
            </thead>
            <tbody>
              {data.workflows.map((w) => (
                <tr>
                  <td>
                    <a href={href("workflows", w.name)}>{w.name}</a>
                    {w.description && <div class="muted small">{w.description}</div>}
                  </td>
                  <td>
                    <span class="chip">{w.trigger.type}</span> <span class="small">{triggerLabel(w.trigger).replace(/^\S+\s?/, "")}</span>
                  </td>
                  <td>
                    <LastRun workflow={w.name} />
                  </td>
                  <td class="small">{(w.trigger.next_slot as string) ?? <span class="muted">—</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Card>
      )}
    </>
  );
}
