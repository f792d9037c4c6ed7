// The audit log: who did what to what, newest first, filtered by text in the actor, action,
// target or details.

import { useEffect, useState } from "preact/hooks";
import { get, query, Session, may } from "../api";
import { Card, ErrorBox, Loading, Pager, Time, useLoad } from "../ui";

interface Entry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  details: unknown;
}

export function Audit({ session }: { session: Session }) {
  const [before, setBefore] = useState<number[]>([]);
  const [filter, setFilter] = useState("");
  const [q, setQ] = useState("");
  const cursor = before[before.length - 1];
  const { data, error } = useLoad(() => get<{ entries: Entry[]; next_before: number | null }>(`/api/audit${query({ limit: 100, before: cursor, q })}`), [cursor, q]);
  // The hub filters (every entry, not only this page), a moment after typing stops.
  useEffect(() => {
    const t = setTimeout(() => {
      setBefore([]);
      setQ(filter.trim());
    }, 300);
    return () => clearTimeout(t);
  }, [filter]);
  if (!may(session, "admin")) return <ErrorBox error="Only admin tokens read the audit log." />;
  const entries = data?.entries ?? [];
  return (
    <>
      <h1>Audit log</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter">
        <label>
          Filter <input value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} placeholder="actor, action, target…" aria-label="Filter the audit log" />
        </label>
      </form>
      <ErrorBox error={error} />
      {!data && !error && <Loading />}
      {data && (
        <Card>
          <table class="list">
            <thead>
              <tr>
                <th>When</th>
                <th>Who</th>
                <th>What</th>
                <th>To what</th>
                <th>Details</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => (
                <tr>
                  <td class="small">
                    <Time at={e.at} />
                  </td>
                  <td class="mono small">{e.actor}</td>
                  <td>{e.action}</td>
                  <td class="mono small">{e.target}</td>
                  <td class="small mono">{e.details && JSON.stringify(e.details) !== "{}" ? JSON.stringify(e.details) : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager trail={before} next={data.next_before} onChange={setBefore} />
        </Card>
      )}
    </>
  );
}
