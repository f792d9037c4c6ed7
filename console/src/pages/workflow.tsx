// One workflow: its graph, laid out from its file, and beside it the selected node's settings
// and what that step took and gave in the workflow's recent runs.

import { useMemo, useState } from "preact/hooks";
import { get, may, post, query, Run, RunPage, Session, WorkflowDetail } from "../api";
import { go } from "../route";
import { at, DETAIL_CHARS, GNode, Graph, workflowGraph } from "../graph";
import { href } from "../route";
import { Card, ErrorBox, Json, Loading, StateBadge, Time, useLoad } from "../ui";
import { triggerLabel } from "./workflows";

const KIND_ICON: Record<string, string> = {
  trigger: "▶",
  output: "■",
  uses: "⇄",
  state: "⛁",
  map: "ƒ",
  if: "◇",
  switch: "◇",
  for_each: "↻",
  wait: "◷",
  call: "↪",
  fail: "✕",
  approval: "☑",
  respond: "↩",
};

export function GraphView(props: { graph: Graph; selected?: string; onSelect: (n: GNode) => void; states?: Map<string, string> }) {
  const { graph, selected, onSelect } = props;
  return (
    <svg class="graph" width={graph.width} height={graph.height} viewBox={`0 0 ${graph.width} ${graph.height}`} role="group" aria-label="Workflow graph">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
        </marker>
        <marker id="arrow-error" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead error" />
        </marker>
      </defs>
      {graph.frames.map((f) => (
        <g class="frame">
          <rect x={f.x} y={f.y} width={f.w} height={f.h} rx="10" />
          <text x={f.x + 8} y={f.y + 13}>
            {f.label}
          </text>
        </g>
      ))}
      {graph.edges.map((e) => (
        <g class={`edge ${e.kind}`}>
          <polyline points={e.points.map((p) => p.join(",")).join(" ")} marker-end={e.kind === "join" ? undefined : e.kind === "error" ? "url(#arrow-error)" : "url(#arrow)"} />
          {e.label && (
            <text x={e.points[1][0] + 4} y={(e.points[1][1] + e.points[2][1]) / 2}>
              {e.label}
            </text>
          )}
        </g>
      ))}
      {graph.labels.map((l) => (
        <text class="branch-label" x={l.x + 6} y={l.y}>
          {l.text}
        </text>
      ))}
      {graph.links.map((l) => (
        <a href={href("workflows", l.workflow)} class="link-node">
          <rect x={l.x} y={l.y} width={l.w} height={l.h} rx={l.h / 2} />
          <text x={l.x + l.w / 2} y={l.y + l.h / 2 + 4} text-anchor="middle">
            {l.workflow}
          </text>
        </a>
      ))}
      {graph.nodes.map((n) => {
        const state = props.states?.get(n.key);
        return (
          <g
            class={`node kind-${n.kind} ${selected === n.key ? "selected" : ""} ${state ? `run-${state}` : ""}`}
            tabIndex={0}
            role="button"
            aria-label={`${n.kind} ${n.title}: ${n.detail}`}
            aria-pressed={selected === n.key}
            data-key={n.key}
            onClick={() => onSelect(n)}
            onKeyDown={(e) => {
              if (e.key === "Enter" || e.key === " ") {
                e.preventDefault();
                onSelect(n);
              }
            }}
          >
            <title>{`${n.title}: ${n.detail}`}</title>
            <rect x={n.x} y={n.y} width={n.w} height={n.h} rx="8" />
            <text class="icon" x={n.x + 16} y={n.y + n.h / 2 + 5} text-anchor="middle">
              {KIND_ICON[n.kind] ?? "•"}
            </text>
            <text class="title" x={n.x + 32} y={n.y + 21}>
              {n.title}
            </text>
            <text class="detail" x={n.x + 32} y={n.y + 38}>
              {n.detail.length > DETAIL_CHARS ? `${n.detail.slice(0, DETAIL_CHARS - 1)}…` : n.detail}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

function StepRuns({ workflow, step }: { workflow: string; step: string }) {
  const { data, error } = useLoad(async () => {
    const page = await get<RunPage>(`/api/runs${query({ workflow, limit: 5 })}`);
    return Promise.all(page.runs.map((r) => get<Run>(`/api/runs/${encodeURIComponent(r.id)}`)));
  }, [workflow]);
  if (error) return <ErrorBox error={error} />;
  if (!data) return <Loading />;
  const seen = data
    .map((run) => ({ run, attempts: (run.steps ?? []).filter((a) => a.step.split("/")[0] === step) }))
    .filter((x) => x.attempts.length > 0);
  if (!seen.length) return <p class="muted">No recent run reached this step.</p>;
  return (
    <>
      {seen.map(({ run, attempts }) => {
        const last = attempts[attempts.length - 1];
        return (
          <details class="step-run">
            <summary>
              <StateBadge state={last.state} /> <a href={href("runs", run.id)}>{run.id.slice(0, 14)}</a> <Time at={last.started_at} />
            </summary>
            <h4>Input</h4>
            <Json value={last.input} />
            {last.error ? (
              <>
                <h4>Error</h4>
                <Json value={last.error} />
              </>
            ) : (
              <>
                <h4>Output</h4>
                <Json value={last.output} />
              </>
            )}
          </details>
        );
      })}
    </>
  );
}

/// Starts a run with an input written here, and opens it: of a manual workflow, or (for editors) a
/// trial run of one with another trigger, the input standing for its event.
function RunWithInput({ name, trigger }: { name: string; trigger: string }) {
  const [input, setInput] = useState("{}");
  const [error, setError] = useState<unknown>(null);
  return (
    <Card title="Run with this input">
      {trigger !== "manual" && (
        <p class="small muted">
          A trial run: the input stands for the {trigger} trigger's event; <code>.trigger</code> is <code>{"{type: manual}"}</code>, without the
          trigger's headers or slot.
        </p>
      )}
      <textarea class="mono sample" rows={4} value={input} onInput={(e) => setInput((e.target as HTMLTextAreaElement).value)} aria-label="Run input (JSON)" />
      <ErrorBox error={error} />
      <button
        class="primary"
        onClick={async () => {
          setError(null);
          let value: unknown;
          try {
            value = JSON.parse(input);
          } catch (e) {
            setError(`The input is not JSON: ${(e as Error).message}`);
            return;
          }
          try {
            const r = await post<{ run_id: string }>(`/api/workflows/${encodeURIComponent(name)}/runs`, { input: value, trial: trigger !== "manual" });
            go(href("runs", r.run_id));
          } catch (e) {
            setError(e);
          }
        }}
      >
        Run
      </button>
    </Card>
  );
}

export function WorkflowPage({ session, name }: { session: Session; name: string }) {
  const { data, error } = useLoad(() => get<WorkflowDetail>(`/api/workflows/${encodeURIComponent(name)}`), [name]);
  const [selected, setSelected] = useState<GNode | null>(null);
  const doc = data?.document;
  const graph = useMemo(() => (doc ? workflowGraph(doc) : null), [doc]);
  if (error) return <ErrorBox error={error} />;
  if (!data || !graph) return <Loading />;
  return (
    <>
      <div class="page-head">
        <h1>{data.name}</h1>
        <a class="button plain" href={`#/runs?workflow=${encodeURIComponent(data.name)}`}>
          Runs
        </a>
        <div class="grow" />
        {may(session, "edit") && (
          <a class="button primary" href={`${href("workflows", data.name)}/edit`}>
            Edit
          </a>
        )}
      </div>
      {data.description && <p class="lead">{data.description}</p>}
      <p class="small muted">
        {data.file} · version {data.version.slice(0, 12)} · {triggerLabel(data.trigger)}
      </p>
      <div class="split">
        <Card class="graph-card">
          <GraphView graph={graph} selected={selected?.key} onSelect={setSelected} />
        </Card>
        <Card class="inspector" title={selected ? `${selected.title}` : "Select a step"}>
          {!selected && <p class="muted">Select a node of the graph (or focus it and press Enter) to see its settings and its recent inputs and outputs.</p>}
          {selected && (
            <>
              <p class="small">
                <span class="chip">{selected.kind}</span> {selected.detail}
              </p>
              <h3>Settings</h3>
              <Json value={at(doc, selected.path)} label="Settings" />
              {selected.kind !== "trigger" && selected.kind !== "output" && (
                <>
                  <h3>Recent runs</h3>
                  <StepRuns workflow={data.name} step={selected.key} />
                </>
              )}
            </>
          )}
        </Card>
      </div>
      {(data.trigger.type === "manual" ? may(session, "operate") : may(session, "edit")) && (
        <RunWithInput name={data.name} trigger={String(data.trigger.type)} />
      )}
      <details class="source">
        <summary>File</summary>
        <pre class="yaml">{data.source}</pre>
      </details>
    </>
  );
}
