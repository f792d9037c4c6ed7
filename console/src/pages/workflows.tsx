// The workflows of the project: trigger, last run, failure rate, next schedule slot.

import { get, may, Session, WorkflowListItem, WorkflowSummary } from "../api";
import { href } from "../route";
import { ago, Card, ErrorBox, Loading, StateBadge, Time, useLoad } from "../ui";

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

function LastRun({ run }: { run: WorkflowListItem["last_run"] }) {
  if (!run) return <span class="muted">no runs yet</span>;
  return (
    <a href={href("runs", run.id)}>
      <StateBadge state={run.state} /> {ago(run.created_at)}
    </a>
  );
}

/// The share of the last 24 hours' runs that failed.
function FailureRate({ w }: { w: WorkflowListItem }) {
  if (w.runs_24h === 0)
    return (
      <span class="muted" title="No runs in the last 24 hours">
        —
      </span>
    );
  const percent = Math.round((100 * w.failed_24h) / w.runs_24h);
  return (
    <span class={w.failed_24h > 0 ? "error-text" : undefined} title={`${w.failed_24h} of ${w.runs_24h} runs in the last 24 hours failed`}>
      {w.failed_24h > 0 && percent === 0 ? "<1" : percent}% <span class="muted small">of {w.runs_24h}</span>
    </span>
  );
}

export function WorkflowList({ session }: { session: Session }) {
  const { data, error } = useLoad(() => get<{ workflows: WorkflowListItem[] }>("/api/workflows"), []);
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
                <th>Failed (24 h)</th>
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
                    <LastRun run={w.last_run} />
                  </td>
                  <td>
                    <FailureRate w={w} />
                  </td>
                  <td class="small">
                    <Time at={w.trigger.next_slot as string | undefined} />
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
