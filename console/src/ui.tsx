// Small pieces every page uses: state badges, times, JSON, errors, confirmations, loading.

import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

export function StateBadge({ state }: { state: string }) {
  return <span class={`badge state-${state}`}>{state}</span>;
}

/// A time as the reader's local time, with the ISO text on hover.
export function Time({ at }: { at: string | number | null | undefined }) {
  if (at === null || at === undefined || at === "") return <span class="muted">—</span>;
  const d = new Date(at);
  const iso = d.toISOString();
  return (
    <time dateTime={iso} title={iso}>
      {d.toLocaleString()}
    </time>
  );
}

export function ago(at: string | null | undefined): string {
  if (!at) return "—";
  const s = Math.round((Date.now() - new Date(at).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/// How long from `a` to `b` (or to now).
export function duration(a: string | null | undefined, b: string | null | undefined): string {
  if (!a) return "";
  const ms = (b ? new Date(b).getTime() : Date.now()) - new Date(a).getTime();
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

export function Json({ value, label }: { value: unknown; label?: string }) {
  if (value === undefined) return null;
  return (
    <pre class="json" aria-label={label}>
      {JSON.stringify(value, null, 2)}
    </pre>
  );
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  return (
    <div class="error-box" role="alert">
      {message}
    </div>
  );
}

export function Loading() {
  return <p class="muted">Loading…</p>;
}

/// Loads `f` when `deps` change; `reload` loads it again.
export function useLoad<T>(f: () => Promise<T>, deps: unknown[]): {
  data: T | undefined;
  error: unknown;
  reload: () => void;
} {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    f().then(
      (d) => {
        if (live) {
          setData(d);
          setError(null);
        }
      },
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

/// A button that asks first, in a dialog that the keyboard can answer.
export function ConfirmButton(props: {
  label: string;
  question: string;
  onConfirm: () => Promise<void> | void;
  kind?: "primary" | "danger" | "plain";
  confirmLabel?: string;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <>
      <button class={props.kind ?? "plain"} onClick={() => dialog.current?.showModal()}>
        {props.label}
      </button>
      <dialog ref={dialog} class="confirm">
        <p>{props.question}</p>
        <ErrorBox error={error} />
        <div class="actions">
          <button class="plain" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button
            class={props.kind ?? "primary"}
            disabled={busy}
            onClick={async () => {
              setBusy(true);
              setError(null);
              try {
                await props.onConfirm();
                dialog.current?.close();
              } catch (e) {
                setError(e);
              } finally {
                setBusy(false);
              }
            }}
          >
            {props.confirmLabel ?? props.label}
          </button>
        </div>
      </dialog>
    </>
  );
}

export function Card(props: { title?: string; children: ComponentChildren; class?: string }) {
  return (
    <section class={`card ${props.class ?? ""}`}>
      {props.title && <h2>{props.title}</h2>}
      {props.children}
    </section>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/// Calls `f` for every event of the hub's stream (`/api/events`) while the page is open. Events
/// say what changed; the page reads what it shows again.
export function useHubEvents(f: (kind: string, data: any) => void, deps: unknown[]) {
  useEffect(() => {
    const source = new EventSource("/api/events");
    const on = (kind: string) => (e: MessageEvent) => {
      let data: any = null;
      try {
        data = JSON.parse(e.data);
      } catch {
        data = null;
      }
      f(kind, data);
    };
    const handlers: [string, (e: MessageEvent) => void][] = ["run", "step", "lagged"].map((k) => [k, on(k)]);
    for (const [k, h] of handlers) source.addEventListener(k, h as EventListener);
    return () => source.close();
  }, deps);
}

/// "Newer" and "Older" for a list read a page at a time: `trail` holds the cursors of the pages
/// gone through (the last is the page shown), `next` the cursor of the page after it.
export function Pager<C>({ trail, next, onChange }: { trail: C[]; next: C | null | undefined; onChange: (trail: C[]) => void }) {
  return (
    <div class="pager">
      <button class="plain" disabled={!trail.length} onClick={() => onChange(trail.slice(0, -1))}>
        ← Newer
      </button>
      <button class="plain" disabled={next === null || next === undefined} onClick={() => onChange([...trail, next!])}>
        Older →
      </button>
    </div>
  );
}
