// The visual editor: the workflow's graph, and for the selected node a form that changes it —
// its settings, a connection's action with a field per declared input, a child workflow, a wait,
// retries and what a failure does, the condition a step runs under, adding a step below or
// into a branch, moving and deleting steps, the trigger. Every change is sent to the hub as an
// edit of the text (`POST /api/workflows/edit`), which rewrites only the part changed, so the
// text editor and the file keep their comments and order.

import { useEffect, useMemo, useState } from "preact/hooks";
import { get, post, Problem } from "../api";
import { at, GNode, Path, stepKind, workflowGraph } from "../graph";
import { Card, ErrorBox, Json } from "../ui";
import { GraphView } from "./workflow";

interface Catalog {
  connectors: {
    type: string;
    summary: string;
    actions: {
      name: string;
      summary: string;
      inputs: string[];
      required: string[];
      /// What each input takes (connectors written as data): its JSON Schema and description.
      schemas?: Record<string, { schema: { type?: string; enum?: unknown[] }; description?: string }>;
    }[];
  }[];
}

interface Connection {
  name: string;
  type: string;
}

/// Applies an edit, or an edit made from the document as it is when the edit's turn comes (edits
/// apply one after another).
export type ApplyEdit = (edit: Record<string, unknown> | ((doc: any) => Record<string, unknown>)) => Promise<boolean>;

/// Sends an edit of `source` to the hub; gives back the new text, document and problems.
export async function editText(source: string, file: string, edit: Record<string, unknown>) {
  return post<{ source: string; document: any; problems: Problem[] }>("/api/workflows/edit", { source, edit, file });
}

function uniqueId(doc: any, base: string): string {
  const ids = new Set<string>();
  const walk = (list: any) => {
    if (!Array.isArray(list)) return;
    for (const s of list) {
      if (s?.id) ids.add(String(s.id));
      walk(s?.then);
      walk(s?.else);
      walk(s?.steps);
      walk(s?.default);
      if (s?.cases && typeof s.cases === "object") Object.values(s.cases).forEach(walk);
    }
  };
  walk(doc?.steps);
  for (let i = 1; ; i++) {
    const id = i === 1 ? base : `${base}_${i}`;
    if (!ids.has(id)) return id;
  }
}

const NEW_STEPS: { kind: string; label: string; make: (id: string, connection?: string, workflow?: string) => any }[] = [
  { kind: "map", label: "Compute a value (map)", make: (id) => ({ id, map: "${{ .input }}" }) },
  { kind: "uses", label: "Call a connection", make: (id, c) => ({ id, uses: `${c ?? "api"}.request`, with: { method: "GET", path: "/" } }) },
  { kind: "if", label: "If / else", make: (id) => ({ id, if: "${{ true }}", then: [{ id: `${id}_yes`, map: "yes" }] }) },
  { kind: "switch", label: "Switch on a value", make: (id) => ({ id, switch: "${{ .input.kind }}", cases: { a: [{ id: `${id}_a`, map: "a" }] } }) },
  { kind: "for_each", label: "For each item", make: (id) => ({ id, for_each: "${{ .input.items }}", steps: [{ id: `${id}_item`, map: "${{ .item }}" }] }) },
  { kind: "approval", label: "Ask a person (approval)", make: (id) => ({ id, approval: { message: "Go ahead?", timeout: "24h" } }) },
  { kind: "call", label: "Run another workflow (call)", make: (id, _c, w) => ({ id, call: w ?? "other-workflow", with: "${{ .input }}" }) },
  { kind: "wait", label: "Wait", make: (id) => ({ id, wait: "1m" }) },
  { kind: "fail", label: "Fail the run", make: (id) => ({ id, fail: "Stopped: ${{ .input | tojson }}" }) },
];

function Field(props: { label: string; value: string; onCommit: (v: string) => void; multiline?: boolean; mono?: boolean }) {
  const [value, setValue] = useState(props.value);
  useEffect(() => setValue(props.value), [props.value]);
  // What the field holds now (read from the element: a blur can come before the next render).
  const commit = (el: EventTarget | null) => {
    const now = (el as HTMLInputElement | null)?.value ?? value;
    if (now !== props.value) props.onCommit(now);
  };
  const common = {
    value,
    "aria-label": props.label,
    class: props.mono ? "mono" : "",
    onInput: (e: Event) => setValue((e.target as HTMLInputElement).value),
    onBlur: (e: Event) => commit(e.target),
  };
  return (
    <label class="stack">
      {props.label}
      {props.multiline ? (
        <textarea rows={3} {...common} />
      ) : (
        <input
          {...common}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              commit(e.target);
            }
          }}
        />
      )}
    </label>
  );
}

/// A new case of a `switch`: its value, and a button.
function CaseAdder({ onAdd }: { onAdd: (name: string) => Promise<boolean> }) {
  const [name, setName] = useState("");
  return (
    <div class="inline-form">
      <label>
        New case <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} aria-label="New case's value" />
      </label>
      <button
        class="plain"
        disabled={!name.trim()}
        onClick={async () => {
          if (await onAdd(name.trim())) setName("");
        }}
      >
        Add case
      </button>
    </div>
  );
}

/// The list a step is in, and its index there.
function place(path: Path): { list: Path; index: number } | null {
  const index = path[path.length - 1];
  if (typeof index !== "number") return null;
  return { list: path.slice(0, -1), index };
}

function TriggerForm({ doc, apply, name }: { doc: any; apply: ApplyEdit; name: string }) {
  const t = doc?.trigger;
  const kind = t === "manual" || t == null ? "manual" : typeof t === "object" ? Object.keys(t)[0] : String(t);
  const settings = typeof t === "object" && t ? t[kind] : null;
  return (
    <>
      <label class="stack">
        Trigger
        <select
          aria-label="Trigger"
          value={kind}
          onChange={(e) => {
            const k = (e.target as HTMLSelectElement).value;
            const value = k === "manual" ? "manual" : k === "webhook" ? { webhook: { path: name } } : k === "schedule" ? { schedule: "0 * * * *" } : t;
            apply({ op: "set", path: ["trigger"], value });
          }}
        >
          <option value="manual">manual (API, console)</option>
          <option value="webhook">webhook</option>
          <option value="schedule">schedule</option>
          {!["manual", "webhook", "schedule"].includes(kind) && <option value={kind}>{kind} (edit in the text)</option>}
        </select>
      </label>
      {kind === "webhook" && (
        <Field label="Webhook path" value={String(settings?.path ?? "")} onCommit={(v) => apply({ op: "set", path: ["trigger"], value: { webhook: { ...settings, path: v } } })} mono />
      )}
      {kind === "schedule" && (
        <Field
          label="Cron"
          value={typeof settings === "string" ? settings : String(settings?.cron ?? "")}
          onCommit={(v) => apply({ op: "set", path: ["trigger"], value: { schedule: typeof settings === "object" && settings ? { ...settings, cron: v } : v } })}
          mono
        />
      )}
    </>
  );
}

function UsesForm({ step, path, apply, catalog, connections }: { step: any; path: Path; apply: ApplyEdit; catalog: Catalog | null; connections: Connection[] }) {
  const [connection, action] = String(step.uses ?? "").split(".", 2);
  const type = connections.find((c) => c.name === connection)?.type;
  const spec = catalog?.connectors.find((c) => c.type === type);
  const actionSpec = spec?.actions.find((a) => a.name === action);
  const withValue = step.with && typeof step.with === "object" ? step.with : {};
  const setWith = (key: string, v: string, kind?: string) =>
    // From the step's `with` as it is when the edit applies: two quick changes both stay.
    apply((doc) => {
      const now = at(doc, path)?.with;
      const next: Record<string, unknown> = now && typeof now === "object" ? { ...now } : {};
      if (v === "") delete next[key];
      else next[key] = typed(v, kind);
      return { op: "set", path: [...path, "with"], value: next };
    });
  return (
    <>
      <label class="stack">
        Connection
        <select
          aria-label="Connection"
          value={connection}
          onChange={(e) => {
            const c = (e.target as HTMLSelectElement).value;
            const t = connections.find((x) => x.name === c)?.type;
            const first = catalog?.connectors.find((x) => x.type === t)?.actions[0]?.name ?? "request";
            apply({ op: "set", path: [...path, "uses"], value: `${c}.${first}` });
          }}
        >
          {!connections.some((c) => c.name === connection) && <option value={connection}>{connection} (not in weft.yaml)</option>}
          {connections.map((c) => (
            <option value={c.name}>
              {c.name} ({c.type})
            </option>
          ))}
        </select>
      </label>
      <label class="stack">
        Action
        <select aria-label="Action" value={action} onChange={(e) => apply({ op: "set", path: [...path, "uses"], value: `${connection}.${(e.target as HTMLSelectElement).value}` })}>
          {!spec?.actions.some((a) => a.name === action) && <option value={action}>{action}</option>}
          {spec?.actions.map((a) => (
            <option value={a.name} title={a.summary}>
              {a.name}
            </option>
          ))}
        </select>
      </label>
      {actionSpec && <p class="small muted">{actionSpec.summary}</p>}
      {(actionSpec?.inputs ?? Object.keys(withValue)).map((key) => {
        const v = withValue[key];
        const label = `${key}${actionSpec?.required.includes(key) ? " (required)" : ""}`;
        const about = actionSpec?.schemas?.[key];
        const text = v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v);
        // The widget follows the input's schema: a list for an enum, a number for a number.
        const choices = about?.schema.enum;
        const kind = about?.schema.type;
        return (
          <>
            {choices ? (
              <label class="stack">
                {label}
                <select aria-label={label} value={text} onChange={(e) => setWith(key, (e.target as HTMLSelectElement).value, kind)}>
                  <option value="">(not set)</option>
                  {text !== "" && !choices.some((c) => String(c) === text) && <option value={text}>{text}</option>}
                  {choices.map((c) => (
                    <option value={String(c)}>{String(c)}</option>
                  ))}
                </select>
              </label>
            ) : (
              <Field label={label} value={text} onCommit={(x) => setWith(key, x, kind)} mono />
            )}
            {about?.description && <p class="small muted field-hint">{about.description}</p>}
          </>
        );
      })}
    </>
  );
}

/// A value typed into a field: JSON objects and lists are values; where the input's schema wants a
/// number or a boolean, the number or boolean the text spells; anything else (an expression such
/// as `${{ .input.n }}`) is text.
function typed(v: string, kind?: string): unknown {
  if ((kind === "integer" || kind === "number") && /^-?\d+(\.\d+)?$/.test(v.trim())) return Number(v.trim());
  if (kind === "boolean" && (v === "true" || v === "false")) return v === "true";
  if (/^[\[{]/.test(v.trim())) {
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  }
  return v;
}

function shown(v: unknown): string {
  return v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);
}

/// Sets a key of a step, or removes it when the field is emptied.
function setOrDelete(apply: ApplyEdit, path: Path, value: unknown) {
  return value === "" ? apply({ op: "delete", path }) : apply({ op: "set", path, value });
}

/// `call`: which workflow runs as a child, and its input.
function CallForm({ step, path, apply, workflows }: { step: any; path: Path; apply: ApplyEdit; workflows: string[] }) {
  const target = String(step.call ?? "");
  return (
    <>
      <label class="stack">
        Workflow to run (call)
        <select aria-label="Workflow to run" value={target} onChange={(e) => apply({ op: "set", path: [...path, "call"], value: (e.target as HTMLSelectElement).value })}>
          {!workflows.includes(target) && <option value={target}>{target} (not in the project)</option>}
          {workflows.map((w) => (
            <option value={w}>{w}</option>
          ))}
        </select>
      </label>
      <Field label="Its input (with)" value={shown(step.with)} onCommit={(v) => setOrDelete(apply, [...path, "with"], typed(v))} multiline mono />
    </>
  );
}

/// `wait`: for a time (`wait: 30s`, `wait: {for: …}`) or until a moment (`wait: {until: …}`).
function WaitForm({ step, path, apply }: { step: any; path: Path; apply: ApplyEdit }) {
  const w = step.wait;
  const until = w && typeof w === "object" && "until" in w;
  const setWait = (value: unknown) => apply({ op: "set", path: [...path, "wait"], value });
  return (
    <>
      <label class="stack">
        Wait
        <select
          aria-label="How the step waits"
          value={until ? "until" : "for"}
          onChange={(e) => ((e.target as HTMLSelectElement).value === "until" ? setWait({ until: "${{ .input.send_at }}" }) : setWait("1m"))}
        >
          <option value="for">for a time</option>
          <option value="until">until a moment</option>
        </select>
      </label>
      {until ? (
        <Field label="Until (a time such as 2026-12-24T09:00:00Z, or an expression)" value={shown(w.until)} onCommit={(v) => setWait({ until: v })} mono />
      ) : (
        <Field label="Wait for (such as 30s, 2h, 1d)" value={shown(typeof w === "object" && w ? w.for : w)} onCommit={(v) => setWait(v)} mono />
      )}
    </>
  );
}

/// Retries, the time limit of one attempt and what a failure does: `uses` and `call` steps.
function ErrorsForm({ step, path, apply, later, kind }: { step: any; path: Path; apply: ApplyEdit; later: string[]; kind: string }) {
  const retry = typeof step.retry === "number" ? { attempts: step.retry } : step.retry && typeof step.retry === "object" ? step.retry : {};
  const setRetry = (key: string, v: string) => {
    const next: Record<string, unknown> = { ...retry };
    if (v.trim() === "") delete next[key];
    else next[key] = key === "attempts" && /^\d+$/.test(v.trim()) ? Number(v) : v.trim();
    return Object.keys(next).length === 0 ? apply({ op: "delete", path: [...path, "retry"] }) : apply({ op: "set", path: [...path, "retry"], value: next });
  };
  const onError = String(step.on_error ?? "fail");
  return (
    <fieldset class="group">
      <legend>Errors and retries</legend>
      <Field label={`Attempts (default ${kind === "call" ? 1 : 3})`} value={shown(retry.attempts)} onCommit={(v) => setRetry("attempts", v)} />
      <label class="stack">
        Backoff
        <select aria-label="Backoff" value={String(retry.backoff ?? "")} onChange={(e) => setRetry("backoff", (e.target as HTMLSelectElement).value)}>
          <option value="">exponential (default)</option>
          <option value="exponential">exponential</option>
          <option value="fixed">fixed</option>
        </select>
      </label>
      <Field label="First delay (initial, default 1s)" value={shown(retry.initial)} onCommit={(v) => setRetry("initial", v)} mono />
      <Field label="Longest delay (max, default 30s)" value={shown(retry.max)} onCommit={(v) => setRetry("max", v)} mono />
      {kind === "uses" && <Field label="Time limit of one attempt (timeout)" value={shown(step.timeout)} onCommit={(v) => setOrDelete(apply, [...path, "timeout"], v.trim())} mono />}
      <label class="stack">
        When it fails for good (on_error)
        <select
          aria-label="When it fails for good"
          value={onError}
          onChange={(e) => {
            const v = (e.target as HTMLSelectElement).value;
            return v === "fail" ? (step.on_error === undefined ? Promise.resolve(true) : apply({ op: "delete", path: [...path, "on_error"] })) : apply({ op: "set", path: [...path, "on_error"], value: v });
          }}
        >
          <option value="fail">fail the run (default)</option>
          <option value="continue">go on with the next step</option>
          {!["fail", "continue", ...later].includes(onError) && <option value={onError}>go to {onError} (not a later step)</option>}
          {later.map((id) => (
            <option value={id}>go to step {id}</option>
          ))}
        </select>
      </label>
    </fieldset>
  );
}

function StepForm(props: { node: GNode; doc: any; apply: ApplyEdit; catalog: Catalog | null; connections: Connection[]; workflows: string[]; select: (key: string | null) => void }) {
  const { node, doc, apply } = props;
  const step = at(doc, node.path);
  const kind = stepKind(step);
  const where = place(node.path);
  const list = where ? at(doc, where.list) : null;
  const [adding, setAdding] = useState("map");
  const add = async (listPath: Path, index: number) => {
    const maker = NEW_STEPS.find((s) => s.kind === adding)!;
    const id = uniqueId(doc, adding === "uses" ? "call" : adding);
    const value = maker.make(id, props.connections[0]?.name, props.workflows.find((w) => w !== props.doc?.name));
    if (await apply({ op: "insert", path: listPath, index, value })) props.select(id);
  };
  return (
    <>
      <Field label="Step id" value={String(step?.id ?? "")} onCommit={(v) => apply({ op: "set", path: [...node.path, "id"], value: v }).then((ok) => ok && props.select(v))} mono />
      {kind === "map" && <Field label="Value (map)" value={typeof step.map === "string" ? step.map : JSON.stringify(step.map)} onCommit={(v) => apply({ op: "set", path: [...node.path, "map"], value: v })} multiline mono />}
      {kind === "if" && <Field label="Condition (if)" value={String(step.if ?? "")} onCommit={(v) => apply({ op: "set", path: [...node.path, "if"], value: v })} mono />}
      {kind === "uses" && <UsesForm step={step} path={node.path} apply={apply} catalog={props.catalog} connections={props.connections} />}
      {kind === "approval" && (
        <Field
          label="Question (approval)"
          value={typeof step.approval === "string" ? step.approval : String(step.approval?.message ?? "")}
          onCommit={(v) => apply({ op: "set", path: [...node.path, "approval"], value: typeof step.approval === "object" ? { ...step.approval, message: v } : v })}
        />
      )}
      {kind === "for_each" && (
        <>
          <Field label="Items (for_each)" value={String(step.for_each ?? "")} onCommit={(v) => apply({ op: "set", path: [...node.path, "for_each"], value: v })} mono />
          <Field
            label="At the same time (concurrency)"
            value={step.concurrency === undefined ? "" : String(step.concurrency)}
            onCommit={(v) =>
              v.trim() === ""
                ? apply({ op: "delete", path: [...node.path, "concurrency"] })
                : apply({ op: "set", path: [...node.path, "concurrency"], value: Number(v) })
            }
          />
        </>
      )}
      {kind === "switch" && (
        <>
          <Field label="Value (switch)" value={String(step.switch ?? "")} onCommit={(v) => apply({ op: "set", path: [...node.path, "switch"], value: v })} mono />
          <CaseAdder onAdd={(name) => {
            const cases = step.cases && typeof step.cases === "object" ? step.cases : {};
            if (name in cases) return Promise.resolve(false);
            const id = uniqueId(doc, name.replace(/[^A-Za-z0-9_]/g, "_") || "case");
            return apply({ op: "set", path: [...node.path, "cases", name], value: [{ id, map: name }] });
          }} />
        </>
      )}
      {kind === "wait" && <WaitForm step={step} path={node.path} apply={apply} />}
      {kind === "call" && <CallForm step={step} path={node.path} apply={apply} workflows={props.workflows} />}
      {kind === "fail" && <Field label="Message (fail)" value={String(step.fail ?? "")} onCommit={(v) => apply({ op: "set", path: [...node.path, "fail"], value: v })} />}
      {kind !== "if" && kind !== "?" && (
        <Field label="Only when (if; empty: always)" value={shown(step.if)} onCommit={(v) => setOrDelete(apply, [...node.path, "if"], v.trim())} mono />
      )}
      {(kind === "uses" || kind === "call") && (
        <ErrorsForm
          step={step}
          path={node.path}
          apply={apply}
          kind={kind}
          later={where && Array.isArray(list) ? list.slice(where.index + 1).map((s: any) => String(s?.id ?? "")).filter(Boolean) : []}
        />
      )}
      {!["map", "if", "uses", "approval", "wait", "fail", "for_each", "switch", "call"].includes(kind) && (
        <>
          <p class="small muted">This kind of step is changed in the text; its settings:</p>
          <Json value={step} />
        </>
      )}
      <label class="stack">
        New step
        <select aria-label="New step's kind" value={adding} onChange={(e) => setAdding((e.target as HTMLSelectElement).value)}>
          {NEW_STEPS.map((s) => (
            <option value={s.kind}>{s.label}</option>
          ))}
        </select>
      </label>
      <div class="actions">
        {where && (
          <button class="plain" onClick={() => add(where.list, where.index + 1)}>
            Add step below
          </button>
        )}
        {kind === "if" && (
          <>
            <button class="plain" onClick={() => add([...node.path, "then"], Array.isArray(step.then) ? step.then.length : 0)}>
              Add to then
            </button>
            <button class="plain" onClick={() => add([...node.path, "else"], Array.isArray(step.else) ? step.else.length : 0)}>
              Add to else
            </button>
          </>
        )}
        {kind === "for_each" && (
          <button class="plain" onClick={() => add([...node.path, "steps"], Array.isArray(step.steps) ? step.steps.length : 0)}>
            Add to body
          </button>
        )}
        {kind === "switch" &&
          Object.keys(step.cases && typeof step.cases === "object" ? step.cases : {}).map((name) => (
            <button class="plain" onClick={() => add([...node.path, "cases", name], Array.isArray(step.cases[name]) ? step.cases[name].length : 0)}>
              Add to case {name}
            </button>
          ))}
        {kind === "switch" && (
          <button class="plain" onClick={() => add([...node.path, "default"], Array.isArray(step.default) ? step.default.length : 0)}>
            Add to default
          </button>
        )}
      </div>
      {where && Array.isArray(list) && (
        <div class="actions">
          <button class="plain" disabled={where.index === 0} onClick={() => apply({ op: "move", path: where.list, from: where.index, to: where.index - 1 })}>
            Move up
          </button>
          <button class="plain" disabled={where.index >= list.length - 1} onClick={() => apply({ op: "move", path: where.list, from: where.index, to: where.index + 1 })}>
            Move down
          </button>
          <button
            class="danger"
            onClick={async () => {
              if (await apply({ op: "delete", path: node.path })) props.select(null);
            }}
          >
            Delete step
          </button>
        </div>
      )}
    </>
  );
}

export function VisualEditor(props: { doc: any; apply: ApplyEdit; error: unknown; name: string }) {
  const { doc, apply } = props;
  const [selected, setSelected] = useState<string | null>(null);
  const catalog = useLoadOnce(() => get<Catalog>("/api/catalog"));
  const connections = useLoadOnce(() => get<{ connections: Connection[] }>("/api/connections"));
  const workflows = useLoadOnce(() => get<{ workflows: { name: string }[] }>("/api/workflows"));
  const graph = useMemo(() => (doc && typeof doc === "object" ? workflowGraph(doc) : null), [doc]);
  const node = graph?.nodes.find((n) => n.key === selected) ?? null;
  if (doc === null) return <p class="muted">Reading the file…</p>;
  if (!graph) return <ErrorBox error="The text is not a workflow yet; fix it in the text editor." />;
  const addFirst = async () => {
    const id = uniqueId(doc, "first");
    if (await apply({ op: "insert", path: ["steps"], index: 0, value: { id, map: "${{ .input }}" } })) setSelected(id);
  };
  return (
    <div class="split">
      <Card class="graph-card">
        <GraphView graph={graph} selected={selected ?? undefined} onSelect={(n) => setSelected(n.key)} />
      </Card>
      <Card class="inspector" title={node ? (node.kind === "trigger" ? "Trigger" : node.kind === "output" ? "Output" : node.title) : "Select a node"}>
        <ErrorBox error={props.error} />
        {!node && (
          <>
            <p class="muted">Select the trigger or a step to change it. Changes go into the file's text; Save writes it.</p>
            {(!Array.isArray(doc.steps) || doc.steps.length === 0) && (
              <button class="plain" onClick={addFirst}>
                Add a first step
              </button>
            )}
          </>
        )}
        {node?.kind === "trigger" && <TriggerForm doc={doc} apply={apply} name={props.name || String(doc?.name ?? "workflow")} />}
        {node?.kind === "output" && (
          <Field label="Output" value={typeof doc.output === "string" ? doc.output : JSON.stringify(doc.output)} onCommit={(v) => apply({ op: "set", path: ["output"], value: v })} mono multiline />
        )}
        {node && node.kind !== "trigger" && node.kind !== "output" && (
          <StepForm node={node} doc={doc} apply={apply} catalog={catalog} connections={connections?.connections ?? []} workflows={workflows?.workflows.map((w) => w.name) ?? []} select={setSelected} />
        )}
      </Card>
    </div>
  );
}

function useLoadOnce<T>(f: () => Promise<T>): T | null {
  const [v, setV] = useState<T | null>(null);
  useEffect(() => {
    f().then(setV, () => setV(null));
  }, []);
  return v;
}
