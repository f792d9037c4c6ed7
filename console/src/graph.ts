// A workflow drawn as a graph: the model read from the workflow's YAML (trigger, steps, the
// branches of `if` and `switch`, `for_each` bodies, `call`s, `on_error` jumps, output) and its
// layout. Workflows are block-structured, so the layout is structured too: a list of steps is a
// column, the branches of a step stand side by side under it and join again below, a `for_each`
// body sits in a frame. That keeps every branch where the file has it, which a general graph
// layout would not, and it is a few dozen lines instead of a library. `on_error` jumps are drawn
// afterwards along the right edge; `call`s point to their child workflow beside the step.

export type Path = (string | number)[];

export interface GNode {
  key: string; // step id, or "@trigger" / "@output"
  kind: string; // uses, map, if, switch, for_each, wait, call, fail, approval, respond, trigger, output
  title: string;
  detail: string;
  path: Path; // where the step is in the YAML document
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface GEdge {
  points: [number, number][];
  kind: "flow" | "error" | "call" | "join";
  label?: string;
}

export interface GFrame {
  x: number;
  y: number;
  w: number;
  h: number;
  label: string;
}

export interface GLink {
  x: number;
  y: number;
  w: number;
  h: number;
  workflow: string;
}

export interface Graph {
  nodes: GNode[];
  edges: GEdge[];
  frames: GFrame[];
  links: GLink[];
  labels: { x: number; y: number; text: string }[];
  width: number;
  height: number;
}

export const NODE_W = 210;
export const NODE_H = 52;
const GAP_Y = 34;
const GAP_X = 36;
const LABEL_H = 18;
const FRAME_PAD = 16;

const STEP_KINDS = ["uses", "map", "then", "switch", "for_each", "wait", "call", "fail", "approval", "respond"];

type Json = any;

/// How many characters of a node's detail fit in its box.
export const DETAIL_CHARS = 25;

function short(value: unknown, max = 60): string {
  let text = typeof value === "string" ? value : JSON.stringify(value);
  if (text === undefined) return "";
  text = text.replace(/\s+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/// The kind of a step, as its key names it (`then` makes an `if` step).
export function stepKind(step: Json): string {
  if (!step || typeof step !== "object") return "?";
  const key = STEP_KINDS.find((k) => k in step);
  if (!key) return "?";
  if (key === "then") return "if";
  if (key === "uses" && typeof step.uses === "string" && step.uses.startsWith("state.")) return "state";
  return key;
}

function describe(step: Json): { title: string; detail: string } {
  const kind = stepKind(step);
  const id = String(step?.id ?? "?");
  switch (kind) {
    case "uses":
    case "state":
      return { title: id, detail: String(step.uses) };
    case "map":
      return { title: id, detail: `map ${short(step.map)}` };
    case "if":
      return { title: id, detail: `if ${short(step.if)}` };
    case "switch":
      return { title: id, detail: `switch ${short(step.switch)}` };
    case "for_each":
      return { title: id, detail: `for each ${short(step.for_each)}` };
    case "wait":
      return {
        title: id,
        detail:
          step.wait && typeof step.wait === "object"
            ? "until" in step.wait
              ? `wait until ${short(step.wait.until)}`
              : `wait ${short(step.wait.for)}`
            : `wait ${short(step.wait)}`,
      };
    case "call":
      return { title: id, detail: `call ${short(step.call)}` };
    case "fail":
      return { title: id, detail: `fail ${short(step.fail)}` };
    case "approval":
      return {
        title: id,
        detail: `approval ${short(typeof step.approval === "object" ? step.approval?.message : step.approval)}`,
      };
    case "respond":
      return { title: id, detail: `respond ${short(step.respond)}` };
    default:
      return { title: id, detail: "unknown step" };
  }
}

export function triggerText(trigger: Json): { title: string; detail: string } {
  if (trigger === "manual" || trigger == null) return { title: "manual", detail: "started through the API" };
  if (typeof trigger !== "object") return { title: String(trigger), detail: "" };
  const kind = Object.keys(trigger)[0] ?? "?";
  const s = trigger[kind] ?? {};
  switch (kind) {
    case "webhook":
      return { title: "webhook", detail: `/hooks/${s.path ?? "?"}` };
    case "schedule":
      return { title: "schedule", detail: short(typeof s === "string" ? s : s.cron) };
    case "poll":
      return { title: "poll", detail: `${short(s.uses)} every ${s.every ?? "?"}` };
    case "queue":
      return { title: "queue", detail: short(s.connection ?? s) };
    case "tool":
      return { title: "tool", detail: short(s.description ?? "") };
    default:
      return { title: kind, detail: "" };
  }
}

// A laid-out block: a list of steps or one step with what it contains. `place` emits it at an
// absolute position; its entry is the top centre and its exit the bottom centre.
interface Block {
  w: number;
  h: number;
  place(x: number, y: number, g: Graph): void;
}

function nodeBlock(node: Omit<GNode, "x" | "y" | "w" | "h">): Block {
  return {
    w: NODE_W,
    h: NODE_H,
    place(x, y, g) {
      g.nodes.push({ ...node, x: x + (this.w - NODE_W) / 2, y, w: NODE_W, h: NODE_H });
    },
  };
}

function column(blocks: Block[]): Block {
  const w = Math.max(NODE_W, ...blocks.map((b) => b.w));
  const h = blocks.reduce((s, b) => s + b.h, 0) + GAP_Y * Math.max(0, blocks.length - 1);
  return {
    w,
    h,
    place(x, y, g) {
      const cx = x + w / 2;
      let top = y;
      blocks.forEach((b, i) => {
        if (i > 0) g.edges.push({ kind: "flow", points: [[cx, top - GAP_Y], [cx, top]] });
        b.place(cx - b.w / 2, top, g);
        top += b.h + GAP_Y;
      });
    },
  };
}

function steps(list: Json, path: Path): Block {
  const items = Array.isArray(list) ? list : [];
  return column(items.map((s, i) => step(s, [...path, i])));
}

function branches(head: Block, arms: { label: string; body: Block }[]): Block {
  // An empty arm is still wide enough for its label ("default", a case's value).
  const armW = arms.map((a) => Math.max(a.body.w, NODE_W * 0.8, a.label.length * 7 + 24));
  const inner = armW.reduce((s, w) => s + w, 0) + GAP_X * Math.max(0, arms.length - 1);
  const w = Math.max(head.w, inner);
  const armH = Math.max(0, ...arms.map((a) => a.body.h));
  const h = head.h + GAP_Y + LABEL_H + armH + GAP_Y;
  return {
    w,
    h,
    place(x, y, g) {
      const cx = x + w / 2;
      head.place(cx - head.w / 2, y, g);
      const fork = y + head.h + GAP_Y / 2;
      const armTop = y + head.h + GAP_Y + LABEL_H;
      const join = y + h;
      let left = cx - inner / 2;
      arms.forEach((a, i) => {
        const ax = left + armW[i] / 2;
        g.edges.push({ kind: "flow", points: [[cx, y + head.h], [cx, fork], [ax, fork], [ax, armTop]] });
        g.labels.push({ x: ax, y: armTop - 5, text: a.label });
        a.body.place(ax - a.body.w / 2, armTop, g);
        const bottom = armTop + a.body.h;
        g.edges.push({ kind: "join", points: [[ax, bottom], [ax, join - GAP_Y / 2], [cx, join - GAP_Y / 2], [cx, join]] });
        left += armW[i] + GAP_X;
      });
    },
  };
}

function frame(head: Block, label: string, body: Block): Block {
  const w = Math.max(head.w, body.w + 2 * FRAME_PAD);
  const h = head.h + GAP_Y + body.h + 2 * FRAME_PAD;
  return {
    w,
    h,
    place(x, y, g) {
      const cx = x + w / 2;
      head.place(cx - head.w / 2, y, g);
      const top = y + head.h + GAP_Y;
      g.edges.push({ kind: "flow", points: [[cx, y + head.h], [cx, top + FRAME_PAD]] });
      const fw = body.w + 2 * FRAME_PAD;
      g.frames.push({ x: cx - fw / 2, y: top, w: fw, h: body.h + 2 * FRAME_PAD, label });
      body.place(cx - body.w / 2, top + FRAME_PAD, g);
    },
  };
}

function step(s: Json, path: Path): Block {
  const kind = stepKind(s);
  const { title, detail } = describe(s);
  const head = nodeBlock({ key: String(s?.id ?? path.join(".")), kind, title, detail, path });
  if (kind === "if") {
    return branches(head, [
      { label: "then", body: steps(s.then, [...path, "then"]) },
      { label: "else", body: steps(s.else, [...path, "else"]) },
    ]);
  }
  if (kind === "switch") {
    const cases = s.cases && typeof s.cases === "object" ? Object.entries(s.cases) : [];
    return branches(head, [
      ...cases.map(([name, body]) => ({ label: name, body: steps(body, [...path, "cases", name]) })),
      { label: "default", body: steps(s.default, [...path, "default"]) },
    ]);
  }
  if (kind === "for_each") {
    return frame(head, "for each item", steps(s.steps, [...path, "steps"]));
  }
  return head;
}

/// The graph of a parsed workflow document.
export function workflowGraph(doc: Json): Graph {
  const g: Graph = { nodes: [], edges: [], frames: [], links: [], labels: [], width: 0, height: 0 };
  const t = triggerText(doc?.trigger);
  const parts: Block[] = [nodeBlock({ key: "@trigger", kind: "trigger", ...t, path: ["trigger"] })];
  const body = steps(doc?.steps, ["steps"]);
  if (body.h > 0) parts.push(body);
  if (doc && "output" in doc) {
    parts.push(nodeBlock({ key: "@output", kind: "output", title: "output", detail: short(doc.output), path: ["output"] }));
  }
  const all = column(parts);
  const margin = 24;
  all.place(margin, margin, g);
  let width = all.w + 2 * margin;
  const height = all.h + 2 * margin;

  // `call` steps point at their child workflow, beside them.
  for (const n of g.nodes) {
    if (n.kind !== "call") continue;
    const s = at(doc, n.path);
    const target = typeof s?.call === "string" ? s.call : s?.call?.workflow;
    if (typeof target !== "string") continue;
    const link = { x: n.x + n.w + 40, y: n.y + 10, w: 150, h: NODE_H - 20, workflow: target };
    g.links.push(link);
    g.edges.push({ kind: "call", points: [[n.x + n.w, n.y + n.h / 2], [link.x, link.y + link.h / 2]] });
    width = Math.max(width, link.x + link.w + margin);
  }

  // `on_error: <step id>` jumps, routed along the right edge, one lane each.
  const byKey = new Map(g.nodes.map((n) => [n.key, n]));
  let lane = 0;
  for (const n of g.nodes) {
    const s = n.kind === "trigger" || n.kind === "output" ? null : at(doc, n.path);
    const target = s?.on_error;
    if (typeof target !== "string" || target === "fail" || target === "continue") continue;
    const to = byKey.get(target);
    if (!to) continue;
    const laneX = width - margin + 16 + lane * 14;
    lane += 1;
    g.edges.push({
      kind: "error",
      label: "on error",
      points: [[n.x + n.w, n.y + n.h / 2 + 8], [laneX, n.y + n.h / 2 + 8], [laneX, to.y + to.h / 2 - 8], [to.x + to.w, to.y + to.h / 2 - 8]],
    });
  }
  g.width = width + (lane ? 16 + lane * 14 : 0);
  g.height = height;
  return g;
}

/// The value at `path` in a parsed document.
export function at(doc: Json, path: Path): Json {
  let v = doc;
  for (const p of path) {
    if (v == null) return undefined;
    v = v[p as any];
  }
  return v;
}
