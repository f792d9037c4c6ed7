//! End-to-end tests: the real `weft` binary on real project folders, against a real HTTP server on
//! loopback, killed with SIGKILL where durability is the point.

/// A headless Chromium driven through chromedriver, for the console's tests.
mod browser;
/// A running `weft serve` and calls to it.
mod hub;
/// Helpers: the binary, temporary projects, outputs.
mod support;

/// `weft init`, `lint`, `test`, `run` and `runs` as a new user meets them.
mod basics;
/// Workflows as chatbot tools: the official MCP Python SDK over streamable HTTP and stdio, HTTP
/// function calling, and a tool call that waits for an approval across a restart.
mod chatbot;
/// The conformance suite of consuming connectors: once, malformed, SIGKILL, broker restart.
mod conformance;
/// The web console in a real browser: sign-in, overview, graphs, runs, approvals, roles, CSRF.
mod console;
/// A connector written as data: linted with its steps, and its actions run.
mod definitions;
/// A `weft` process killed in the middle of a step loses and repeats nothing it must not.
mod durability;
/// The example projects lint and pass their tests; `weft schema` validates them.
mod examples;
/// Hostile input and runaway expressions fail a step, never the hub.
mod hardening;
/// The built-in connector library against Prism mocks of the vendors' documents.
mod library;
/// A connection's rate limit across the runs of a real hub.
mod limits;
/// `weft lint` on a folder of broken files: every diagnostic's file, line, column and text.
mod lint;
/// OAuth2 sign-in of a connection against a local authorization server.
mod oauth;
/// Retries against a server that fails on cue, and `weft runs retry`.
mod retries;
/// The encrypted secret store: values used by connections, kept out of run data, logs and the
/// database file.
mod secrets;
/// API tokens and roles under attack.
mod security;
/// `weft serve`: signed webhooks, SIGKILL and SIGTERM under load, schedules, the API, metrics, reload.
mod serve;
/// SQL connections: a PostgreSQL table copied into MariaDB by a poll, across a SIGKILL.
mod sql;
/// The README's tutorial (examples/shop-to-crm) against mocks of the vendors.
mod tutorial;
