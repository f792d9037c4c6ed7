// The console's one way to the hub: JSON requests to /api with the session cookie, the CSRF
// header on every request that changes something, and errors as the API's `{error: {code,
// message}}` turned into `ApiError`s that pages show as they are.

export type Role = "admin" | "editor" | "operator" | "viewer" | "tool";

export interface Session {
  token_id: string;
  session_id: string;
  role: Role;
  name: string | null;
  csrf: string;
  expires_at: string;
}

/// What a role may do, as the API grants it (crates/core/src/auth.rs).
export function may(session: Session, access: "operate" | "edit" | "admin"): boolean {
  switch (session.role) {
    case "admin":
      return true;
    case "editor":
      return access !== "admin";
    case "operator":
      return access === "operate";
    default:
      return false;
  }
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    /// The answer's body, for errors that carry more than a message (a refused save's problems).
    public body: any = null,
  ) {
    super(message);
  }
}

let csrf = "";

/// Remembers the session's CSRF token, which every request that changes something carries.
export function useCsrf(token: string) {
  csrf = token;
}

let onSignedOut: () => void = () => {};

/// What to do when the hub says the session is gone (expired, or signed out elsewhere).
export function whenSignedOut(f: () => void) {
  onSignedOut = f;
}

export async function request<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...extra };
  let payload: BodyInit | undefined;
  if (body !== undefined) {
    if (typeof body === "string") {
      headers["Content-Type"] = "application/yaml";
      payload = body;
    } else {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
  }
  if (method !== "GET" && method !== "HEAD") headers["X-Weft-CSRF"] = csrf;
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  } catch {
    throw new ApiError(0, "unreachable", "The hub cannot be reached. Is `weft serve` running?");
  }
  const text = await response.text();
  let json: any = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const code = json?.error?.code ?? "error";
    const message = json?.error?.message ?? `${response.status} ${response.statusText}`;
    if (response.status === 401 && path !== "/api/session") onSignedOut();
    throw new ApiError(response.status, code, message, json);
  }
  return json as T;
}

export const get = <T>(path: string) => request<T>("GET", path);
export const post = <T>(path: string, body?: unknown) => request<T>("POST", path, body ?? {});
export const put = <T>(path: string, body?: unknown) => request<T>("PUT", path, body);
export const del = <T>(path: string) => request<T>("DELETE", path);

/// Query string from the set values of `params`.
export function query(params: Record<string, string | number | undefined | null>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

// The shapes the pages read.

/// One problem the lint found: where, and what.
export interface Problem {
  file: string;
  line: number;
  column: number;
  message: string;
}

export interface Trigger {
  type: string;
  [key: string]: unknown;
}

export interface WorkflowSummary {
  name: string;
  description: string | null;
  file: string;
  version: string;
  trigger: Trigger;
}

/// A workflow as `GET /api/workflows` lists it, with how its runs have gone.
export interface WorkflowListItem extends WorkflowSummary {
  last_run: { id: string; state: string; created_at: string | null } | null;
  runs_24h: number;
  failed_24h: number;
}

export interface WorkflowDetail extends WorkflowSummary {
  source: string;
  /// The file as JSON, read the way the hub reads it (plain YAML tools cannot read `${{ … }}`).
  document: any;
}

export type RunState = "queued" | "running" | "waiting" | "succeeded" | "failed" | "cancelled";

export interface StepAttempt {
  step: string;
  attempt: number;
  state: string;
  input: unknown;
  output: unknown;
  error: { kind?: string; message?: string; [k: string]: unknown } | null;
  wake_at: string | null;
  started_at: string;
  finished_at: string | null;
}

export interface Run {
  id: string;
  workflow: string;
  version: string;
  state: RunState;
  root_id: string;
  parent_id: string | null;
  parent_step: string | null;
  idempotency_key: string | null;
  trigger: unknown;
  input: unknown;
  output: unknown;
  error: { kind?: string; message?: string; step?: string; [k: string]: unknown } | null;
  wake_at: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  steps?: StepAttempt[];
}

export interface RunPage {
  runs: Run[];
  next_cursor: string | null;
}

export interface Approval {
  id: string;
  run_id: string;
  step: string;
  workflow: string;
  message: string;
  data: unknown;
  state: string;
  run_state: string;
  created_at: string;
  expires_at: string | null;
  answered_at: string | null;
  answer: unknown;
  answered_by: string | null;
}
