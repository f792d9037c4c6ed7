// Runs, newest first, filtered by workflow and state, a page at a time; running ones refresh.

import { useEffect, useRef, useState } from "preact/hooks";
import { get, query, RunPage, WorkflowSummary } from "../api";
import { go, href, Route } from "../route";
import { ago, Card, duration, Empty, ErrorBox, Loading, Pager, StateBadge, useHubEvents, useLoad } from "../ui";

const STATES = ["", "queued", "running", "waiting", "succeeded", "failed", "cancelled"];

/// A `datetime-local` value (the reader's local time) as RFC 3339, for the API.
function iso(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function RunList({ route }: { route: Route }) {
  const workflow = route.params.get("workflow") ?? "";
  const state = route.params.get("state") ?? "";
  const since = route.params.get("since") ?? "";
  const until = route.params.get("until") ?? "";
  const q = route.params.get("q") ?? "";
  const [text, setText] = useState(q);
  useEffect(() => setText(q), [q]);
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const workflows = useLoad(() => get<{ workflows: WorkflowSummary[] }>("/api/workflows"), []);
  const { data, error, reload } = useLoad(
    () => get<RunPage>(`/api/runs${query({ workflow, state, since: iso(since), until: iso(until), q, cursor, limit: 25 })}`),
    [workflow, state, since, until, q, cursor],
  );
  useEffect(() => setCursors([]), [workflow, state, since, until, q]);
  // Live: a run's change (on the first page, where new runs appear) makes the page read again, at
  // most once a second; a slow poll covers runs executed by another hub on the same store.
  const pending = useRef(false);
  useHubEvents(
    (kind) => {
      if (kind === "step" || pending.current || cursors.length) return;
      pending.current = true;
      setTimeout(() => {
        pending.current = false;
        reload();
      }, 1000);
    },
    [workflow, state, since, until, q, cursors.length],
  );
  const live = data?.runs.some((r) => r.state === "queued" || r.state === "running" || r.state === "waiting");
  useEffect(() => {
    if (!live) return;
    const t = setInterval(reload, 10000);
    return () => clearInterval(t);
  }, [live]);
  const filter = (next: Record<string, string>) => go(`#/runs${query({ workflow, state, since, until, q, ...next })}`);
  return (
    <>
      <h1>Runs</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <label>
          Workflow{" "}
          <select value={workflow} onChange={(e) => filter({ workflow: (e.target as HTMLSelectElement).value })}>
            <option value="">all</option>
            {workflows.data?.workflows.map((w) => (
              <option value={w.name}>{w.name}</option>
            ))}
          </select>
        </label>
        <label>
          From <input type="datetime-local" value={since} onChange={(e) => filter({ since: (e.target as HTMLInputElement).value })} aria-label="Created from" />
        </label>
        <label>
          To <input type="datetime-local" value={until} onChange={(e) => filter({ until: (e.target as HTMLInputElement).value })} aria-label="Created before" />
        </label>
        <label>
          Text{" "}
          <input
            type="search"
            value={text}
            placeholder="in the event or error"
            onInput={(e) => setText((e.target as HTMLInputElement).value)}
            onKeyDown={(e) => e.key === "Enter" && filter({ q: text })}
            onBlur={() => text !== q && filter({ q: text })}
            aria-label="Text in the event or error"
          />
        </label>
        <label>
          State{" "}
          <select value={state} onChange={(e) => filter({ state: (e.target as HTMLSelectElement).value })}>
            {STATES.map((s) => (
              <option value={s}>{s || "all"}</option>
            ))}
          </select>
        </label>
      </form>
      <ErrorBox error={error} />
      {!data && !error && <Loading />}
      {data && (
        <Card>
          {data.runs.length === 0 ? (
            <Empty>No runs match.</Empty>
          ) : (
            <table class="list runs">
              <thead>
                <tr>
                  <th>Run</th>
                  <th>Workflow</th>
                  <th>State</th>
                  <th>Started</th>
                  <th>Took</th>
                  <th>Error</th>
                </tr>
              </thead>
              <tbody>
                {data.runs.map((r) => (
                  <tr>
                    <td>
                      <a href={href("runs", r.id)} class="mono">
                        {r.id.slice(0, 14)}
                      </a>
                    </td>
                    <td>{r.workflow}</td>
                    <td>
                      <StateBadge state={r.state} />
                    </td>
                    <td title={r.created_at}>{ago(r.created_at)}</td>
                    <td>{duration(r.started_at, r.finished_at)}</td>
                    <td class="small error-text">{r.error ? `${r.error.step ? `${r.error.step}: ` : ""}${r.error.message ?? ""}` : ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <Pager trail={cursors} next={data.next_cursor} onChange={setCursors} />
        </Card>
      )}
    </>
  );
}
