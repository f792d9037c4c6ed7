// The console's addresses live after `#` (`/#/runs/run_…`), so the hub serves one page at `/`
// and no console address can shadow an API, webhook or MCP path.

import { useEffect, useState } from "preact/hooks";

export interface Route {
  parts: string[];
  params: URLSearchParams;
}

export function current(): Route {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, search] = hash.split("?", 2);
  return {
    parts: path.split("/").filter(Boolean).map(decodeURIComponent),
    params: new URLSearchParams(search ?? ""),
  };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(current());
  useEffect(() => {
    const f = () => setRoute(current());
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  return route;
}

export function href(...parts: string[]): string {
  return `#/${parts.map(encodeURIComponent).join("/")}`;
}

export function go(to: string) {
  location.hash = to.replace(/^#/, "");
}
