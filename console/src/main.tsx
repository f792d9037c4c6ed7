// The console: the sign-in, then the shell (navigation, who is signed in) around the page the
// address names. Everything it shows comes from the hub's REST API with the session cookie.

import "./style.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { del, get, may, post, Session, useCsrf, whenSignedOut } from "./api";
import { href, useRoute } from "./route";
import { ErrorBox } from "./ui";
import { Overview } from "./pages/overview";
import { WorkflowList } from "./pages/workflows";
import { WorkflowPage } from "./pages/workflow";
import { RunList } from "./pages/runs";
import { RunPage } from "./pages/run";
import { Approvals } from "./pages/approvals";
import { Connections } from "./pages/connections";
import { Secrets } from "./pages/secrets";
import { Tokens } from "./pages/tokens";
import { Audit } from "./pages/audit";
import { Editor } from "./pages/editor";

/// Three threads across three: a weave.
function Logo() {
  return (
    <svg class="logo" viewBox="0 0 24 24" aria-hidden="true">
      <g fill="none" stroke-width="2.6" stroke-linecap="round">
        <path d="M4 6h16M4 12h16M4 18h16" stroke="#3b5bdb" />
        <path d="M7 3v18M12 3v18M17 3v18" stroke="#91a7ff" />
      </g>
    </svg>
  );
}

function SignIn({ onSignedIn, linkError }: { onSignedIn: (s: Session) => void; linkError: unknown }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await post<Session>("/api/session", { token: token.trim() }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} aria-label="Sign in">
        <h1>
          <Logo /> Weft
        </h1>
        <p class="muted">
          Sign in with an API token. <code>weft serve</code> prints one on its first start; <code>weft tokens create</code> makes
          more.
        </p>
        {linkError && !error ? (
          <p class="error-box" role="alert">
            The sign-in link did not work: it works once, within an hour of the hub's first start. Sign in with the
            token printed beside it.
          </p>
        ) : null}
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="current-password"
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          required
          autoFocus
        />
        <ErrorBox error={error} />
        <button class="primary" type="submit" disabled={busy || !token.trim()}>
          Sign in
        </button>
      </form>
    </main>
  );
}

const NAV: { to: string; label: string; admin?: boolean }[] = [
  { to: "", label: "Overview" },
  { to: "workflows", label: "Workflows" },
  { to: "runs", label: "Runs" },
  { to: "approvals", label: "Approvals" },
  { to: "connections", label: "Connections" },
  { to: "secrets", label: "Secrets", admin: true },
  { to: "tokens", label: "API tokens", admin: true },
  { to: "audit", label: "Audit log", admin: true },
];

function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const route = useRoute();
  const [open, setOpen] = useState(false);
  const section = route.parts[0] ?? "";
  let page;
  switch (section) {
    case "":
      page = <Overview session={session} />;
      break;
    case "workflows":
      page = !route.parts[1] ? (
        <WorkflowList session={session} />
      ) : route.parts[2] === "edit" ? (
        <Editor key={`edit:${route.parts[1]}`} session={session} name={route.parts[1]} />
      ) : (
        <WorkflowPage session={session} name={route.parts[1]} />
      );
      break;
    case "new":
      page = <Editor key="new" session={session} name={null} />;
      break;
    case "runs":
      page = route.parts[1] ? <RunPage session={session} id={route.parts[1]} /> : <RunList route={route} />;
      break;
    case "approvals":
      page = <Approvals session={session} />;
      break;
    case "connections":
      page = <Connections session={session} />;
      break;
    case "secrets":
      page = <Secrets session={session} />;
      break;
    case "tokens":
      page = <Tokens session={session} />;
      break;
    case "audit":
      page = <Audit session={session} />;
      break;
    default:
      page = <p>Nothing is here. Pick a page on the left.</p>;
  }
  useEffect(() => setOpen(false), [route]);
  return (
    <div class={`shell ${open ? "nav-open" : ""}`}>
      <header class="top">
        <button class="plain menu" aria-label="Menu" aria-expanded={open} onClick={() => setOpen(!open)}>
          ☰
        </button>
        <a class="brand" href="#/">
          <Logo /> Weft
        </a>
        <span class="who" title={`token ${session.token_id}`}>
          {session.name ?? session.token_id} · <span class="role">{session.role}</span>
        </span>
        <button class="plain" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <nav class="side" aria-label="Sections">
        {NAV.filter((n) => !n.admin || may(session, "admin")).map((n) => (
          <a href={href(n.to)} aria-current={section === n.to ? "page" : undefined}>
            {n.label}
          </a>
        ))}
      </nav>
      <main class="page">{page}</main>
    </div>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const signedIn = (s: Session | null) => {
    if (s) useCsrf(s.csrf);
    setSession(s);
  };
  const [linkError, setLinkError] = useState<unknown>(null);
  useEffect(() => {
    whenSignedOut(() => setSession(null));
    // A one-time link from `weft serve`, opened in a new tab or pasted into this one: its secret
    // leaves the address (and the history) at once, and is spent on a session.
    const followLink = () => {
      const link = location.hash.match(/^#\/sign-in\/([^/?]+)$/);
      if (!link) return false;
      history.replaceState(null, "", `${location.pathname}#/`);
      setLinkError(null);
      post<Session>("/api/session", { token: decodeURIComponent(link[1]) }).then(signedIn, (err) => {
        setLinkError(err);
        signedIn(null);
      });
      return true;
    };
    addEventListener("hashchange", followLink);
    if (!followLink()) {
      // No content means no session.
      get<Session | null>("/api/session").then((s) => signedIn(s ?? null), setError);
    }
    return () => removeEventListener("hashchange", followLink);
  }, []);
  if (error) return <ErrorBox error={error} />;
  if (session === undefined) return null;
  if (session === null) return <SignIn onSignedIn={signedIn} linkError={linkError} />;
  const signOut = async () => {
    try {
      await del("/api/session");
    } catch {
      // Signed out already (expired, or ended elsewhere): the sign-in page is right either way.
    }
    signedIn(null);
  };
  return <Shell session={session} onSignOut={signOut} />;
}

render(<App />, document.getElementById("app")!);
