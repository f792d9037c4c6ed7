//! `weft serve`: loads the project, opens its store and hands both to the hub in `weft-server`
//! until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::{CliError, CmdResult, exit, run, setup};

/// Serves the project in `dir` on `listen`.
pub(crate) async fn serve(
    dir: &Path,
    listen: SocketAddr,
    watch: bool,
    shutdown_timeout: Duration,
    tls: Option<weft_server::tls::TlsFiles>,
) -> CmdResult {
    let loaded = setup::load(dir)?;
    let engine = setup::engine(&loaded).await?;
    crate::tokens::bootstrap(engine.store().as_ref(), listen, tls.is_some()).await?;
    let unfinished = engine
        .store()
        .count_unfinished()
        .await
        .map_err(CliError::internal)?;
    let pending: u64 = unfinished.iter().map(|(_, _, n)| n).sum();
    if pending > 0 {
        tracing::info!(
            runs = pending,
            "Resuming unfinished runs from their first uncommitted step."
        );
    }
    let options = weft_server::ServeOptions {
        dir: dir.to_path_buf(),
        listen,
        watch,
        shutdown_timeout,
        tls,
        vault: Some(setup::vault(&loaded, engine.store().clone())),
    };
    weft_server::serve(engine, options, run::interrupt())
        .await
        .map_err(|e| match e {
            weft_server::ServeError::Bind { .. } | weft_server::ServeError::Tls(_) => {
                CliError::usage(e)
            }
            e => CliError::internal(e),
        })?;
    Ok(exit::OK)
}
