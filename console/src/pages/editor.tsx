// The workflow editor (editor role): the file's text with the lint's problems at their line and
// column as you type, a live preview of an expression against a sample event or a past run, the
// workflow's tests, and Save, which the hub accepts only when the whole project loads with the
// new text. New workflows start from a blank page or from a template.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, get, post, Problem, query, request, Run, RunPage, Session, WorkflowDetail, may } from "../api";
import { go, href } from "../route";
import { Card, ErrorBox, Json, Loading, StateBadge, useLoad } from "../ui";
import { editText, VisualEditor } from "./visual";

const TEMPLATES: { name: string; title: string; text: (name: string) => string }[] = [
  {
    name: "blank",
    title: "Blank",
    text: (name) => `name: ${name}\ndescription: What this workflow is for.\ntrigger: manual\nsteps:\n  - id: first\n    map: \${{ .input }}\n`,
  },
  {
    name: "webhook",
    title: "Webhook → map → HTTP request",
    text: (name) =>
      `# POST /hooks/${name} with JSON; the answer (202 {run_id}) comes once the event is committed.\nname: ${name}\ndescription: Receive an event, reshape it and send it on.\ntrigger:\n  webhook:\n    path: ${name}\nsteps:\n  - id: shape\n    map: \${{ {id: .input.id, total: ([.input.lines[]? | .qty * .price] | add // 0)} }}\n  # Replace \`api\` with a connection of weft.yaml.\n  - id: send\n    uses: api.request\n    with:\n      method: POST\n      path: /orders\n      body: \${{ .steps.shape }}\n    retry: { attempts: 5, backoff: exponential, initial: 1s, max: 1m }\noutput: \${{ .steps.send }}\n`,
  },
  {
    name: "schedule",
    title: "Schedule",
    text: (name) => `name: ${name}\ndescription: Runs every hour.\ntrigger:\n  schedule: "0 * * * *"\nsteps:\n  - id: now\n    map: \${{ .trigger }}\n`,
  },
  {
    name: "approval",
    title: "Ask a person first",
    text: (name) =>
      `name: ${name}\ndescription: Do something once a person has approved it.\ntrigger: manual\nsteps:\n  - id: ok\n    approval:\n      message: "Go ahead with \${{ .input | tojson }}?"\n      timeout: 24h\n      on_timeout: reject\noutput: \${{ .steps.ok }}\n`,
  },
];

/// A text area with line numbers, the lines with problems marked.
function CodeEditor(props: { value: string; onInput: (v: string) => void; problems: Problem[]; area: { current: HTMLTextAreaElement | null } }) {
  const gutter = useRef<HTMLDivElement>(null);
  const lines = props.value.split("\n").length;
  const bad = new Set(props.problems.map((p) => p.line));
  return (
    <div class="code">
      <div class="gutter" ref={gutter} aria-hidden="true">
        {Array.from({ length: lines }, (_, i) => (
          <div class={bad.has(i + 1) ? "bad" : ""}>{i + 1}</div>
        ))}
      </div>
      <textarea
        ref={(el) => {
          props.area.current = el;
        }}
        spellcheck={false}
        aria-label="Workflow file"
        value={props.value}
        onInput={(e) => props.onInput((e.target as HTMLTextAreaElement).value)}
        onScroll={(e) => {
          if (gutter.current) gutter.current.scrollTop = (e.target as HTMLTextAreaElement).scrollTop;
        }}
        onKeyDown={(e) => {
          // Tab indents by two spaces (YAML has no tabs); Escape leaves the field for the keyboard.
          if (e.key === "Tab" && !e.shiftKey) {
            const t = e.target as HTMLTextAreaElement;
            e.preventDefault();
            const { selectionStart: s, selectionEnd: end } = t;
            props.onInput(t.value.slice(0, s) + "  " + t.value.slice(end));
            requestAnimationFrame(() => t.setSelectionRange(s + 2, s + 2));
          }
          if (e.key === "Escape") (e.target as HTMLTextAreaElement).blur();
        }}
      />
    </div>
  );
}

/// Moves the cursor of `area` to `line`:`column`.
function reveal(area: HTMLTextAreaElement | null, line: number, column: number) {
  if (!area) return;
  const lines = area.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, column - 1);
  area.focus();
  area.setSelectionRange(offset, offset);
  const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 18;
  area.scrollTop = Math.max(0, (line - 4) * lineHeight);
}

function Problems({ problems, onPick }: { problems: Problem[]; onPick: (p: Problem) => void }) {
  if (!problems.length)
    return (
      <p class="lint-ok" role="status">
        ✓ No problems
      </p>
    );
  return (
    <ul class="problems" role="status" aria-label="Problems">
      {problems.map((p) => (
        <li>
          <button class="plain link" onClick={() => onPick(p)}>
            {p.file}:{p.line}:{p.column}
          </button>{" "}
          {p.message}
        </li>
      ))}
    </ul>
  );
}

/// Try an expression against a sample event or a past run of the workflow.
function ExpressionPreview({ workflow }: { workflow: string | null }) {
  const [expression, setExpression] = useState("${{ .input }}");
  const [source, setSource] = useState("sample");
  const [sample, setSample] = useState('{"input": {"id": "A-1", "lines": [{"qty": 2, "price": 30}]}}');
  const [result, setResult] = useState<{ ok: boolean; value?: unknown; problems: Problem[] } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const runs = useLoad(() => (workflow ? get<RunPage>(`/api/runs${query({ workflow, limit: 10 })}`) : Promise.resolve({ runs: [] as Run[], next_cursor: null })), [workflow]);
  useEffect(() => {
    const t = setTimeout(async () => {
      setError(null);
      try {
        let body: Record<string, unknown> = { expression };
        if (source === "sample") {
          try {
            body.context = JSON.parse(sample);
          } catch (e) {
            setError(`The sample is not JSON: ${(e as Error).message}`);
            return;
          }
        } else {
          body.run_id = source;
        }
        setResult(await post("/api/expressions/preview", body));
      } catch (e) {
        setError(e);
      }
    }, 300);
    return () => clearTimeout(t);
  }, [expression, source, sample]);
  return (
    <Card title="Try an expression" class="preview">
      <label class="stack">
        Expression
        <input class="mono" value={expression} onInput={(e) => setExpression((e.target as HTMLInputElement).value)} aria-label="Expression to try" />
      </label>
      <label class="stack">
        Context
        <select value={source} onChange={(e) => setSource((e.target as HTMLSelectElement).value)} aria-label="Context">
          <option value="sample">a sample event (below)</option>
          {runs.data?.runs.map((r) => (
            <option value={r.id}>
              run {r.id.slice(0, 14)} ({r.state})
            </option>
          ))}
        </select>
      </label>
      {source === "sample" && (
        <label class="stack">
          Sample context (JSON)
          <textarea class="mono sample" value={sample} onInput={(e) => setSample((e.target as HTMLTextAreaElement).value)} rows={4} />
        </label>
      )}
      <ErrorBox error={error} />
      {result && (result.ok ? <Json value={result.value} label="Expression value" /> : <Problems problems={result.problems} onPick={() => {}} />)}
    </Card>
  );
}

function Tests({ name }: { name: string }) {
  const [results, setResults] = useState<{ cases: { file: string; case: string; passed: boolean; problems: string[] }[]; problems: Problem[] } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  return (
    <Card title="Tests">
      <button
        class="plain"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          setError(null);
          try {
            setResults(await post(`/api/workflows/${encodeURIComponent(name)}/tests`));
          } catch (e) {
            setError(e);
          } finally {
            setBusy(false);
          }
        }}
      >
        {busy ? "Running…" : "Run tests"}
      </button>
      <ErrorBox error={error} />
      {results && results.cases.length === 0 && !results.problems.length && <p class="muted">No test case in tests/ runs this workflow.</p>}
      {results && (
        <ul class="test-results" aria-label="Test results">
          {results.cases.map((c) => (
            <li>
              <StateBadge state={c.passed ? "passed" : "failed"} /> {c.case} <span class="muted small">{c.file}</span>
              {c.problems.map((p) => (
                <pre class="small error-text">{p}</pre>
              ))}
            </li>
          ))}
        </ul>
      )}
      {results && results.problems.length > 0 && <Problems problems={results.problems} onPick={() => {}} />}
    </Card>
  );
}

export function Editor({ session, name }: { session: Session; name: string | null }) {
  const isNew = name === null;
  const original = useLoad(() => (isNew ? Promise.resolve(null) : get<WorkflowDetail>(`/api/workflows/${encodeURIComponent(name!)}`)), [name]);
  const [newName, setNewName] = useState("");
  const [template, setTemplate] = useState("blank");
  const [text, setText] = useState<string | null>(null);
  const [problems, setProblems] = useState<Problem[]>([]);
  const [doc, setDoc] = useState<any>(null);
  const [tab, setTab] = useState<"visual" | "text">("visual");
  const [visualError, setVisualError] = useState<unknown>(null);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const area = useRef<HTMLTextAreaElement | null>(null);
  const file = isNew ? `workflows/${newName || "new"}.yaml` : original.data?.file ?? "";
  useEffect(() => {
    if (!isNew && original.data && text === null) {
      setText(original.data.source);
      setDoc(original.data.document);
    }
  }, [original.data]);
  // A template gives the whole text; the name typed afterwards goes into it as an edit, so that
  // nothing built meanwhile is lost.
  useEffect(() => {
    if (isNew) setText(TEMPLATES.find((t) => t.name === template)!.text(newName.trim() || "my-workflow"));
  }, [template]);
  // Lint as you type.
  useEffect(() => {
    if (text === null) return;
    const t = setTimeout(async () => {
      try {
        const r = await request<{ ok: boolean; problems: Problem[]; document: any }>("POST", `/api/workflows/lint${query({ file })}`, text);
        setProblems(r.problems);
        if (r.document && typeof r.document === "object") setDoc(r.document);
      } catch {
        // The save says it again, in words.
      }
    }, 300);
    return () => clearTimeout(t);
  }, [text, file]);
  const dirty = useMemo(() => (isNew ? true : text !== null && text !== original.data?.source), [text, original.data]);
  if (!may(session, "edit")) return <ErrorBox error="Only editor and admin tokens change workflows." />;
  if (original.error) return <ErrorBox error={original.error} />;
  if (text === null) return <Loading />;
  // A visual change is an edit of the text, made by the hub so that the rest stays as written.
  // Edits apply one after another, each to the text the one before it made (two quick changes in
  // the form must not both start from the same text and lose one).
  const latest = useRef(text);
  latest.current = text;
  const latestDoc = useRef(doc);
  latestDoc.current = doc;
  const queue = useRef<Promise<boolean>>(Promise.resolve(true));
  const apply = (edit: Record<string, unknown> | ((doc: any) => Record<string, unknown>)) => {
    const run = async () => {
      setVisualError(null);
      setSaveError(null);
      try {
        // An edit made from the document as it is when its turn comes.
        const change = typeof edit === "function" ? edit(latestDoc.current) : edit;
        const r = await editText(latest.current, file, change);
        latest.current = r.source;
        latestDoc.current = r.document;
        setText(r.source);
        setDoc(r.document);
        setProblems(r.problems);
        return true;
      } catch (e) {
        setVisualError(e);
        return false;
      }
    };
    const next = queue.current.then(run, run);
    queue.current = next;
    return next;
  };
  const save = async () => {
    setBusy(true);
    setSaveError(null);
    setSaved(null);
    const target = isNew ? newName.trim() : name!;
    try {
      // The file's `name:` is the name it is saved under.
      let source = text;
      if (isNew && doc?.name !== target) {
        source = (await editText(text, file, { op: "set", path: ["name"], value: target })).source;
        setText(source);
      }
      // A new workflow must not overwrite one; an edited one must still be the version opened.
      const precondition: Record<string, string> = isNew ? { "If-None-Match": "*" } : { "If-Match": original.data!.version };
      const r = await request<{ version: string }>("PUT", `/api/workflows/${encodeURIComponent(target)}`, source, precondition);
      setSaved(r.version);
      go(href("workflows", target));
    } catch (e) {
      if (e instanceof ApiError && e.status === 422) {
        setProblems(e.body?.error?.details?.problems ?? []);
        setSaveError("Not saved: the project would have the problems listed below.");
      } else {
        setSaveError(e);
      }
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <div class="page-head">
        <h1>{isNew ? "New workflow" : `Edit ${name}`}</h1>
        <span class="muted small">{file}</span>
        <div class="grow" />
        {!isNew && (
          <a class="button plain" href={href("workflows", name!)}>
            Cancel
          </a>
        )}
        <button class="primary" onClick={save} disabled={busy || !dirty || (isNew && !/^[A-Za-z0-9_-]+$/.test(newName.trim()))}>
          Save
        </button>
      </div>
      {isNew && (
        <Card>
          <div class="inline-form">
            <label>
              Name{" "}
              <input
                value={newName}
                onInput={(e) => setNewName((e.target as HTMLInputElement).value)}
                onBlur={(e) => {
                  const v = (e.target as HTMLInputElement).value.trim();
                  if (v && doc && doc.name !== v) apply({ op: "set", path: ["name"], value: v });
                }}
                placeholder="order-sync"
                aria-label="New workflow's name"
              />
            </label>
            <label>
              Start from{" "}
              <select value={template} onChange={(e) => setTemplate((e.target as HTMLSelectElement).value)} aria-label="Template">
                {TEMPLATES.map((t) => (
                  <option value={t.name}>{t.title}</option>
                ))}
              </select>
            </label>
          </div>
        </Card>
      )}
      <ErrorBox error={saveError} />
      {saved && <p role="status">Saved: version {saved.slice(0, 12)}.</p>}
      <div class="tabs editor-tabs" role="tablist">
        <button role="tab" class="plain" aria-selected={tab === "visual"} onClick={() => setTab("visual")}>
          Visual
        </button>
        <button role="tab" class="plain" aria-selected={tab === "text"} onClick={() => setTab("text")}>
          Text
        </button>
        <span class="small muted">{problems.length ? `${problems.length} problem${problems.length === 1 ? "" : "s"}` : "no problems"}</span>
      </div>
      {tab === "visual" && (
        <>
          <VisualEditor doc={doc} apply={apply} error={visualError} name={isNew ? newName.trim() : name!} />
          <Problems problems={problems} onPick={(p) => {
            setTab("text");
            setTimeout(() => reveal(area.current, p.line, p.column), 50);
          }} />
        </>
      )}
      <div class="split" hidden={tab !== "text"}>
        <div>
          <CodeEditor
            value={text}
            onInput={(v) => {
              setText(v);
              setSaveError(null);
            }}
            problems={problems}
            area={area}
          />
          <Problems problems={problems} onPick={(p) => reveal(area.current, p.line, p.column)} />
        </div>
        <div>
          <ExpressionPreview workflow={isNew ? null : name} />
          {!isNew && <Tests name={name!} />}
        </div>
      </div>
    </>
  );
}
