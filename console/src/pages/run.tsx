// The run inspector: what started the run, each step attempt in order with its input, output or
// error and timings, the child runs, and retry, replay and cancel for those who may.

import { useEffect, useState } from "preact/hooks";
import { get, post, query, Run, RunPage, Session, StepAttempt, may } from "../api";
import { go, href } from "../route";
import { Card, ConfirmButton, duration, ErrorBox, Json, Loading, StateBadge, Time, useHubEvents, useLoad } from "../ui";

/// Inputs, outputs and errors larger than this many bytes are fetched when asked for.
const PAYLOAD_BYTES = 16 * 1024;

function isOmitted(v: unknown): v is { $omitted: number } {
  return !!v && typeof v === "object" && "$omitted" in (v as object);
}

/// A payload, or for one left out because of its size, a button that fetches it.
function Payload({ value, label, load }: { value: unknown; label: string; load: () => Promise<unknown> }) {
  const [loaded, setLoaded] = useState<unknown>(undefined);
  const [error, setError] = useState<unknown>(null);
  if (!isOmitted(value)) return <Json value={value} label={label} />;
  if (loaded !== undefined) return <Json value={loaded} label={label} />;
  return (
    <>
      <button
        class="plain"
        onClick={async () => {
          try {
            setLoaded(await load());
          } catch (e) {
            setError(e);
          }
        }}
      >
        Show ({Math.round(value.$omitted / 1024)} KB)
      </button>
      <ErrorBox error={error} />
    </>
  );
}

function Attempt({ a, failed, runId }: { a: StepAttempt; failed: boolean; runId: string }) {
  const whole = () => get<StepAttempt>(`/api/runs/${encodeURIComponent(runId)}/attempt${query({ step: a.step, attempt: a.attempt })}`);
  return (
    <li class={`attempt state-${a.state}`}>
      <details open={failed}>
        <summary>
          <StateBadge state={a.state} /> <strong>{a.step}</strong>
          {a.attempt > 1 && <span class="muted"> attempt {a.attempt}</span>} <span class="muted small">{duration(a.started_at, a.finished_at)}</span>
          {a.error?.message && <span class="error-text small"> — {a.error.message}</span>}
        </summary>
        <div class="io">
          <div>
            <h4>Input</h4>
            <Payload value={a.input} label={`Input of ${a.step}`} load={() => whole().then((w) => w.input)} />
          </div>
          <div>
            {a.error ? (
              <>
                <h4>Error</h4>
                <Payload value={a.error} label={`Error of ${a.step}`} load={() => whole().then((w) => w.error)} />
              </>
            ) : (
              <>
                <h4>Output</h4>
                <Payload value={a.output} label={`Output of ${a.step}`} load={() => whole().then((w) => w.output)} />
              </>
            )}
          </div>
        </div>
        <p class="small muted">
          started <Time at={a.started_at} />
          {a.finished_at && (
            <>
              {" "}
              · finished <Time at={a.finished_at} />
            </>
          )}
        </p>
      </details>
    </li>
  );
}

export function RunPage({ session, id }: { session: Session; id: string }) {
  const { data: run, error, reload } = useLoad(() => get<Run>(`/api/runs/${encodeURIComponent(id)}${query({ payloads: PAYLOAD_BYTES })}`), [id]);
  const wholeRun = () => get<Run>(`/api/runs/${encodeURIComponent(id)}`);
  const children = useLoad(
    () => (run ? get<RunPage>(`/api/runs${query({ root: run.id, limit: 100 })}`).then((p) => p.runs.filter((r) => r.id !== run.id)) : Promise.resolve(null)),
    [run?.id],
  );
  const unfinished = run && ["queued", "running", "waiting"].includes(run.state);
  // Live: the hub says when this run or one of its steps changes. A slow poll stays for runs that
  // another hub on the same store executes.
  useHubEvents(
    (kind, data) => {
      if (kind === "lagged" || data?.run_id === run?.id || data?.run_id === run?.parent_id) reload();
    },
    [run?.id],
  );
  useEffect(() => {
    if (!unfinished) return;
    const t = setInterval(reload, 10000);
    return () => clearInterval(t);
  }, [unfinished]);
  if (error) return <ErrorBox error={error} />;
  if (!run) return <Loading />;
  const failedStep = run.error?.step ?? null;
  const act = async (what: string) => {
    const r = await post<{ run_id: string }>(`/api/runs/${encodeURIComponent(run.id)}/${what}`);
    if (r.run_id !== run.id) go(href("runs", r.run_id));
    else reload();
  };
  return (
    <>
      <div class="page-head">
        <h1>
          Run <span class="mono">{run.id}</span>
        </h1>
        <StateBadge state={run.state} />
        <div class="grow" />
        {may(session, "operate") && (
          <div class="actions">
            {run.state === "failed" && (
              <ConfirmButton label="Retry" kind="primary" question="Continue this run from its failed step, with a fresh attempt budget?" onConfirm={() => act("retry")} />
            )}
            <ConfirmButton label="Replay" question="Start a new run from this run's trigger event, on the workflow's current version?" onConfirm={() => act("replay")} />
            {unfinished && <ConfirmButton label="Cancel run" kind="danger" question="Cancel this run and its unfinished child runs?" onConfirm={() => act("cancel")} />}
          </div>
        )}
      </div>
      {run.state === "failed" && run.error && (
        <div class="failure" role="alert">
          <strong>Failed{failedStep ? <> at step <code>{failedStep}</code></> : null}</strong>
          {run.error.kind && <span class="chip">{run.error.kind}</span>}
          <p>{run.error.message}</p>
        </div>
      )}
      <dl class="facts">
        <dt>Workflow</dt>
        <dd>
          <a href={href("workflows", run.workflow)}>{run.workflow}</a> <span class="muted small">version {run.version.slice(0, 12)}</span>
        </dd>
        <dt>Created</dt>
        <dd>
          <Time at={run.created_at} />
        </dd>
        <dt>Took</dt>
        <dd>{duration(run.started_at, run.finished_at) || "—"}</dd>
        {run.parent_id && (
          <>
            <dt>Parent run</dt>
            <dd>
              <a href={href("runs", run.parent_id)}>{run.parent_id}</a> (step {run.parent_step})
            </dd>
          </>
        )}
        {run.wake_at && (
          <>
            <dt>Wakes</dt>
            <dd>
              <Time at={run.wake_at} />
            </dd>
          </>
        )}
      </dl>
      <div class="split even">
        <Card title="Trigger event">
          <Payload value={run.input} label="Trigger event" load={() => wholeRun().then((r) => r.input)} />
        </Card>
        <Card title={run.state === "failed" ? "Error" : "Output"}>
          <Payload value={run.state === "failed" ? run.error : run.output} label="Run result" load={() => wholeRun().then((r) => (r.state === "failed" ? r.error : r.output))} />
        </Card>
      </div>
      <Card title="Steps">
        {run.steps?.length ? (
          <ol class="timeline">
            {run.steps.map((a) => (
              <Attempt a={a} failed={a.state === "failed" && a.step === failedStep} runId={run.id} />
            ))}
          </ol>
        ) : (
          <p class="muted">No step has started.</p>
        )}
      </Card>
      {children.data && children.data.length > 0 && (
        <Card title="Child runs">
          <ul>
            {children.data.map((c) => (
              <li>
                <a href={href("runs", c.id)}>{c.id}</a> {c.workflow} <StateBadge state={c.state} />
              </li>
            ))}
          </ul>
        </Card>
      )}
    </>
  );
}
