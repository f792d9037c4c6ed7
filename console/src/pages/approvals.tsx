// The approvals inbox: pending approvals with their message and data, answered here with the
// signed-in person's name; and the history of answers.

import { useState } from "preact/hooks";
import { Approval, get, may, post, query, Session } from "../api";
import { href } from "../route";
import { ago, Card, Empty, ErrorBox, Json, Loading, StateBadge, Time, useLoad } from "../ui";

function Answer({ approval, session, onDone }: { approval: Approval; session: Session; onDone: () => void }) {
  const [by, setBy] = useState(localStorage.getItem("weft.approver") ?? session.name ?? "");
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const answer = async (decision: "approve" | "reject") => {
    setBusy(true);
    setError(null);
    try {
      localStorage.setItem("weft.approver", by);
      await post(`/api/approvals/${encodeURIComponent(approval.id)}`, {
        decision,
        by: by.trim() || undefined,
        data: note.trim() ? { note: note.trim() } : undefined,
      });
      onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="answer" onSubmit={(e) => e.preventDefault()} aria-label={`Answer ${approval.id}`}>
      <label>
        Your name <input value={by} onInput={(e) => setBy((e.target as HTMLInputElement).value)} autoComplete="name" />
      </label>
      <label>
        Note <input value={note} onInput={(e) => setNote((e.target as HTMLInputElement).value)} placeholder="optional" />
      </label>
      <ErrorBox error={error} />
      <div class="actions">
        <button type="button" class="primary" disabled={busy} onClick={() => answer("approve")}>
          Approve
        </button>
        <button type="button" class="danger" disabled={busy} onClick={() => answer("reject")}>
          Reject
        </button>
      </div>
    </form>
  );
}

export function Approvals({ session }: { session: Session }) {
  const [tab, setTab] = useState<"pending" | "all">("pending");
  const { data, error, reload } = useLoad(() => get<{ approvals: Approval[] }>(`/api/approvals${query({ state: tab, limit: 100 })}`), [tab]);
  return (
    <>
      <div class="page-head">
        <h1>Approvals</h1>
        <div class="tabs" role="tablist">
          <button role="tab" aria-selected={tab === "pending"} class="plain" onClick={() => setTab("pending")}>
            Pending
          </button>
          <button role="tab" aria-selected={tab === "all"} class="plain" onClick={() => setTab("all")}>
            History
          </button>
        </div>
      </div>
      <ErrorBox error={error} />
      {!data && !error && <Loading />}
      {data && data.approvals.length === 0 && <Empty>{tab === "pending" ? "Nothing waits for an answer." : "No approvals yet."}</Empty>}
      {data?.approvals.map((a) => (
        <Card class="approval">
          <div class="approval-head">
            <StateBadge state={a.state} />
            <span class="muted small">
              {a.workflow} · <a href={href("runs", a.run_id)}>run {a.run_id.slice(0, 14)}</a> · asked {ago(a.created_at)}
              {a.expires_at && (
                <>
                  {" "}
                  · expires <Time at={a.expires_at} />
                </>
              )}
            </span>
          </div>
          <p class="message">{a.message}</p>
          {a.data != null && <Json value={a.data} label="Data" />}
          {a.state === "pending" && may(session, "operate") && <Answer approval={a} session={session} onDone={reload} />}
          {a.answered_at && (
            <p class="small muted">
              {a.state} by {a.answered_by ?? "someone"} <Time at={a.answered_at} />
            </p>
          )}
        </Card>
      ))}
    </>
  );
}
