//! The `weft` command: the composition root that wires the core, the store, the connectors and the
//! engine together, and the only place that talks to a terminal.
//!
//! Each subcommand lives in its own module; this file defines the arguments (their help texts are the
//! CLI's reference) and maps outcomes to exit codes.

mod audit;
mod connections;
mod connectors;
mod erase;
mod init;
mod kb;
mod lint;
mod logging;
mod output;
mod run;
mod secrets;
mod serve;
mod setup;
mod test;
mod tokens;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use logging::LogFormat;

/// The process's allocator: mimalloc instead of the C library's. Under load the hub allocates and
/// frees many small values per run (requests, JSON and jq values, store jobs), a good share of them
/// on another thread than the one that made them (write jobs go to the store's writer thread), and
/// glibc's malloc took about a fifth of the hub's CPU time there; with mimalloc a relay run costs
/// about 160 µs of CPU instead of 192 (BENCHMARKS.md). It is built with eager arena commit off
/// (`.cargo/config.toml`), which keeps the idle hub under 30 MB. Only the binary sets it: the
/// library crates' tests and benchmarks use the system allocator.
///
/// It is metered: each thread counts what it holds, which is how an expression's memory limit
/// (`limits.expression_memory_bytes`) is measured while it runs (`weft_core::expr::Metered`).
#[global_allocator]
static ALLOCATOR: weft_core::expr::Metered<mimalloc::MiMalloc> =
    weft_core::expr::Metered(mimalloc::MiMalloc);

/// Exit codes, documented in `weft --help`.
pub(crate) mod exit {
    /// Everything went as asked.
    pub const OK: u8 = 0;
    /// The thing checked or run failed: lint problems, a failed or cancelled run, a failing test.
    pub const FAILED: u8 = 1;
    /// The command cannot be carried out as given: bad arguments or input, an invalid project.
    pub const USAGE: u8 = 2;
    /// The store or the system failed.
    pub const INTERNAL: u8 = 3;
    /// Interrupted (Ctrl-C or SIGTERM); unfinished runs continue with `weft runs resume`.
    pub const INTERRUPTED: u8 = 130;
}

/// An error that ends the command with an exit code.
pub(crate) struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn usage(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: exit::USAGE,
            error: error.into(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: exit::INTERNAL,
            error: error.into(),
        }
    }
}

pub(crate) type CmdResult = Result<u8, CliError>;

const ABOUT: &str = "Weft: durable integration workflows as text files, linted, tested and run from the command line.";

const LONG_ABOUT: &str = "\
Weft: durable integration workflows as text files, linted, tested and run from the command line.

A project is a folder: weft.yaml (settings and named connections), workflows/*.yaml (one trigger,
ordered steps, jq expressions in ${{ … }}) and tests/*.yaml (cases with canned responses). Every
step of a run is recorded in .weft/ before and after it runs, so a crash never loses or silently
repeats work: unfinished runs continue from their first unfinished step.

Start with `weft init my-project`, then `weft lint`, `weft test` and `weft run hello`.";

const AFTER_HELP: &str = "\
Exit status:
  0    success
  1    the lint, test or run failed (problems were found, a run failed or was cancelled)
  2    the command was wrong: bad arguments or input, or a project that does not load
  3    the store or the system failed
  130  interrupted; unfinished runs continue with `weft runs resume`

Logs go to standard error; set WEFT_LOG (for example WEFT_LOG=debug) to see more.";

/// The weft command line.
#[derive(Parser)]
#[command(name = "weft", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new project that lints, tests and runs as it is.
    Init {
        /// Folder to create the project in (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Check every file of a project and report every problem as file:line:column: message.
    ///
    /// Exits 1 when there is any problem. Checks YAML syntax, unknown keys, types, step ids and the
    /// steps each expression reads, jq syntax inside ${{ }}, connections, actions and called workflows.
    Lint {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print the problems as a JSON array of {file, line, column, message}.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the workflow file format, for editors.
    ///
    /// For example, with the YAML language server: add
    /// `# yaml-language-server: $schema=./workflow.schema.json` to a workflow after
    /// `weft schema > workflow.schema.json`.
    Schema {
        /// Print the schema of connector definitions (`connectors/*.yaml`) instead.
        #[arg(long, conflicts_with = "project")]
        connector: bool,
        /// Complete the workflow schema for this project folder: `uses:` offers its connections'
        /// actions, and `with:` their inputs.
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
    },
    /// Run a workflow to completion and print each step as it finishes.
    ///
    /// The run is committed before its first step starts. If the command is interrupted, the run
    /// stays in the store and `weft runs resume` continues it from its first unfinished step.
    Run {
        /// The workflow's name.
        workflow: String,
        /// The run's input: JSON text, or @file to read it from a file (@- for standard input).
        #[arg(long, short, default_value = "{}")]
        input: String,
        /// An idempotency key: a second `weft run` with the same key continues or shows the first run
        /// instead of starting another.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Print the run record as JSON on standard output (steps still go to standard error).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Run the project as a hub: webhooks, schedules, the REST API, health checks and metrics.
    ///
    /// Serves /hooks/<path> for webhook workflows, fires schedule workflows, and answers the REST
    /// API under /api (its OpenAPI document is /api/openapi.json), /healthz, /readyz and /metrics.
    /// Unfinished runs resume at once. Ctrl-C or SIGTERM stops taking requests, lets in-flight steps
    /// finish (at most --shutdown-timeout) and exits; whatever is left resumes at the next start.
    Serve {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Address and port to listen on.
        #[arg(long, env = "WEFT_LISTEN", default_value = "127.0.0.1:7807")]
        listen: std::net::SocketAddr,
        /// Reload the project when its files change; a version with problems is reported and the
        /// last good one keeps serving.
        #[arg(long)]
        watch: bool,
        /// Longest time a shutdown waits for in-flight steps.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        shutdown_timeout: std::time::Duration,
        /// Log format: text, or json (one object per line).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Serve HTTPS: the certificate chain, a PEM file (leaf first). Needs --tls-key.
        #[arg(long, requires = "tls_key", env = "WEFT_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key, a PEM file. Needs --tls-cert.
        #[arg(long, requires = "tls_cert", env = "WEFT_TLS_KEY")]
        tls_key: Option<PathBuf>,
    },
    /// Serve the project's tools over MCP on standard input and output, for chatbots that start
    /// their tools as a program (Claude Desktop, IDE agents).
    ///
    /// Lists every workflow with a `tool` trigger (and kb_search when the project has a kb/
    /// folder) and runs them in this process. Logs go to standard error; standard output carries
    /// only the protocol.
    Mcp {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Read the audit log, newest first: who (token id, cli, stdio, system, files) did what, when.
    Audit {
        /// Most entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only entries older than this sequence number, to page back.
        #[arg(long)]
        before: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Personal data in runs: erase what a data-protection request names.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// The encrypted secret store: credentials that connections use as `{ secret: NAME }`.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Connector types: list them, show one's actions and inputs, or make a definition from an
    /// OpenAPI document.
    Connectors {
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
    /// Connections that sign in (OAuth2 authorization code): `connect` signs one in through the
    /// running hub.
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// API tokens of the hub: create (the secret is shown once), list, revoke.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Tool definitions for chatbots.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Look at runs and steer them: list, show, retry, replay, resume, cancel.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Run the test cases in tests/*.yaml and report a pass/fail line per case.
    ///
    /// Each case runs its workflow on a throwaway store with canned results for every step that calls
    /// an outside system; waits and retry delays take no time. Exits 1 when any case fails.
    Test {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Delete every run (with its child runs, step data and approvals) whose event matches a jq
    /// predicate over {input, trigger, workflow}, such as '.input.email == "ada@example.com"'.
    ///
    /// Runs still going are left (exit 1): cancel them or erase again once they finish. Writes an
    /// audit entry with the count.
    Erase {
        /// The jq predicate.
        #[arg(long = "match")]
        predicate: String,
        /// Only count what matches.
        #[arg(long)]
        dry_run: bool,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Set a secret: its value is read from standard input (piped, or typed at a hidden prompt),
    /// never from an argument, and stored encrypted (AES-256-GCM) under the master key.
    ///
    /// The master key comes from WEFT_MASTER_KEY (base64 of 32 bytes), the file WEFT_MASTER_KEY_FILE
    /// names, or .weft/master.key (created with mode 0600 when the first secret is set). A running
    /// hub picks the new value up within seconds.
    Set {
        /// Its name, as `{ secret: NAME }` refers to it.
        name: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// List the secrets: names and dates, never values.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Delete a secret.
    Rm {
        /// Its name.
        name: String,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Re-encrypt every secret under a new master key. A key file is replaced; with
    /// WEFT_MASTER_KEY, the new key is printed once, for you to put there before the next start.
    RotateKey {
        #[command(flatten)]
        project: ProjectArg,
    },
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// List the connector types: the build's and the project's `connectors/` definitions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Show a connector type's actions and their inputs.
    Show {
        /// The type, as connections name it in `type:`.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Make a connector definition from an OpenAPI 3.0/3.1 or Swagger 2.0 document (JSON or YAML).
    ///
    /// Prints the definition (or writes it with --out, such as connectors/shop.yaml) and, on
    /// standard error, what could not be mapped.
    ImportOpenapi {
        /// The document's file, or - for standard input.
        spec: String,
        /// The connector's type name (default: from the document's title).
        #[arg(long)]
        name: Option<String>,
        /// Only operations whose operationId, action name or a tag matches this regular expression.
        #[arg(long)]
        include: Option<String>,
        /// Write the definition to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the built-in library's reference pages (Markdown, one per connector) into a folder.
    Docs {
        /// The folder (the repository keeps them in docs/connectors).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// Sign a connection in (`auth: { type: oauth2, grant: authorization_code }`): prints the
    /// provider's sign-in address and waits until the person has signed in. Needs the hub running
    /// and an admin token in WEFT_TOKEN; the hub keeps the tokens in the secret store.
    Connect {
        /// The connection's name.
        name: String,
        /// The hub's address.
        #[arg(long, default_value = "http://127.0.0.1:7807")]
        hub: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token and print its secret once (only its hash is stored).
    ///
    /// Roles: viewer reads; operator also retries, cancels, starts runs, answers approvals and calls
    /// tools; editor also changes workflows and connections; admin also manages tokens and secrets;
    /// tool calls only the tools given with --tools.
    Create {
        /// admin, editor, operator, viewer or tool.
        #[arg(long)]
        role: String,
        /// For --role tool: the tools it may call, comma-separated.
        #[arg(long)]
        tools: Option<String>,
        /// How long it works, such as 30d (default: until revoked).
        #[arg(long, value_parser = parse_duration)]
        expires: Option<std::time::Duration>,
        /// A label, such as the bot or person it is for.
        #[arg(long)]
        name: Option<String>,
        /// Print {id, token, role, tools, expires_at} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// List the tokens: id, role, state (live, expired, revoked), label; never a secret.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Revoke a token: requests carrying it get 401 from then on.
    Revoke {
        /// The token's id (tok_…).
        id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Print the project's tools in a vendor's function-calling format, to paste into a bot's
    /// request or an assistant platform. Calls go to POST /api/tools/<name> of `weft serve`.
    Export {
        /// openai (Chat Completions `tools`), anthropic (Messages `tools`) or openapi.
        #[arg(long, value_enum)]
        format: tools::ExportFormat,
        /// The hub's base URL, for the openapi format's `servers`.
        #[arg(long, default_value = "http://127.0.0.1:7807")]
        server: String,
        #[command(flatten)]
        project: ProjectArg,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long, short)]
        workflow: Option<String>,
        /// Only runs in this state: queued, running, waiting, succeeded, failed or cancelled.
        #[arg(long, short)]
        state: Option<String>,
        /// Most runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only runs older than this run id (to page through a long list).
        #[arg(long)]
        before: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Show a run with every step attempt, its input, output and error.
    Show {
        /// The run's id, or a unique prefix of it.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Continue a failed run from its failed step (with a fresh attempt budget) and run it to the end.
    Retry {
        /// The run's id, or a unique prefix of it.
        id: String,
        /// Print the run record as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Start a new run from a run's trigger event, on the workflow's current version.
    Replay {
        /// The run's id, or a unique prefix of it.
        id: String,
        /// Print the new run's record as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Continue every unfinished run (queued, running or waiting) until all have finished.
    ///
    /// Any later start of the engine, such as `weft serve`, does this by itself.
    Resume {
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Delete every top-level run that finished longer ago than --older-than, with its child runs
    /// and step data (what `retention` in weft.yaml does on a running hub). Writes an audit entry.
    Purge {
        /// Such as 30d.
        #[arg(long, value_parser = parse_duration)]
        older_than: std::time::Duration,
        /// Print the count as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Cancel a run and its unfinished child runs.
    Cancel {
        /// The run's id, or a unique prefix of it.
        id: String,
        #[command(flatten)]
        project: ProjectArg,
    },
}

/// The project folder, for commands that act on a project's runs.
#[derive(Args, Clone)]
pub(crate) struct ProjectArg {
    /// The project folder.
    #[arg(
        long = "project",
        short = 'C',
        env = "WEFT_PROJECT",
        default_value = "."
    )]
    pub dir: PathBuf,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    weft_core::duration::parse(text)
}

/// The stack of the async runtime's threads.
pub(crate) const RUNTIME_STACK: usize = 64 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve { log_format, .. } => logging::init(*log_format, "info"),
        _ => logging::init(LogFormat::Text, "warn"),
    }
    // jq programs are parsed, compiled and run recursively; the core bounds their size, and these
    // stacks leave room for the largest it allows, and for the evaluations that run on the
    // runtime's threads before they move to threads of their own (`setup::eval_options`).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(RUNTIME_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    // Run on a worker thread (with its large stack), not on the main thread.
    let result = runtime
        .block_on(runtime.spawn(dispatch(cli.command)))
        .unwrap_or_else(|e| {
            Err(CliError::internal(anyhow::anyhow!(
                "the command stopped unexpectedly: {e}"
            )))
        });
    // Do not wait for tasks still in flight (a second Ctrl-C, or a run left waiting).
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError { code, error }) => {
            // An error may quote what a system answered, credentials included.
            let message = format!("error: {error:#}");
            eprintln!("{}", logging::secrets().scrubber().text(&message));
            ExitCode::from(code)
        }
    }
}

async fn dispatch(command: Command) -> CmdResult {
    match command {
        Command::Init { dir } => init::init(&dir),
        Command::Lint { dir, json } => lint::lint(&dir, json),
        Command::Schema { connector, project } => {
            let schema = match (connector, project) {
                (true, _) => weft_core::schema::connector_schema(),
                (false, Some(dir)) => {
                    weft_core::schema::workflow_schema_for(&setup::load(&dir)?.project)
                }
                (false, None) => weft_core::schema::workflow_schema(),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).map_err(CliError::internal)?
            );
            Ok(exit::OK)
        }
        Command::Run {
            workflow,
            input,
            idempotency_key,
            json,
            project,
        } => run::run(&project.dir, &workflow, &input, idempotency_key, json).await,
        Command::Runs { command } => match command {
            RunsCommand::List {
                workflow,
                state,
                limit,
                before,
                json,
                project,
            } => run::list(&project.dir, workflow, state, limit, before, json).await,
            RunsCommand::Show { id, json, project } => run::show(&project.dir, &id, json).await,
            RunsCommand::Retry { id, json, project } => run::retry(&project.dir, &id, json).await,
            RunsCommand::Replay { id, json, project } => run::replay(&project.dir, &id, json).await,
            RunsCommand::Resume { project } => run::resume(&project.dir).await,
            RunsCommand::Cancel { id, project } => run::cancel(&project.dir, &id).await,
            RunsCommand::Purge {
                older_than,
                json,
                project,
            } => erase::purge(&project.dir, older_than, json).await,
        },
        Command::Test { dir, json } => test::test(&dir, json).await,
        Command::Mcp { dir } => tools::mcp(&dir).await,
        Command::Audit {
            limit,
            before,
            json,
            project,
        } => audit::audit(&project.dir, limit, before, json).await,
        Command::Data {
            command:
                DataCommand::Erase {
                    predicate,
                    dry_run,
                    json,
                    project,
                },
        } => erase::erase(&project.dir, &predicate, dry_run, json).await,
        Command::Secrets { command } => match command {
            SecretsCommand::Set { name, project } => secrets::set(&project.dir, &name).await,
            SecretsCommand::List { json, project } => secrets::list(&project.dir, json).await,
            SecretsCommand::Rm { name, project } => secrets::remove(&project.dir, &name).await,
            SecretsCommand::RotateKey { project } => secrets::rotate_key(&project.dir).await,
        },
        Command::Connectors { command } => match command {
            ConnectorsCommand::List { json, project } => connectors::list(&project.dir, json),
            ConnectorsCommand::Show {
                name,
                json,
                project,
            } => connectors::show(&project.dir, &name, json),
            ConnectorsCommand::ImportOpenapi {
                spec,
                name,
                include,
                out,
            } => connectors::import_openapi(&spec, name, include, out.as_deref()),
            ConnectorsCommand::Docs { out } => connectors::docs(&out),
        },
        Command::Connections { command } => match command {
            ConnectionsCommand::Connect { name, hub } => connections::connect(&name, &hub).await,
        },
        Command::Tokens { command } => match command {
            TokensCommand::Create {
                role,
                tools,
                expires,
                name,
                json,
                project,
            } => tokens::create(&project.dir, &role, tools, expires, name, json).await,
            TokensCommand::List { json, project } => tokens::list(&project.dir, json).await,
            TokensCommand::Revoke { id, project } => tokens::revoke(&project.dir, &id).await,
        },
        Command::Tools {
            command:
                ToolsCommand::Export {
                    format,
                    server,
                    project,
                },
        } => tools::export(&project.dir, format, &server),
        Command::Serve {
            dir,
            listen,
            watch,
            shutdown_timeout,
            log_format: _,
            tls_cert,
            tls_key,
        } => {
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| weft_server::tls::TlsFiles { cert, key });
            serve::serve(&dir, listen, watch, shutdown_timeout, tls).await
        }
    }
}
