//! `weft init`: a new project that lints, tests and runs as it is.

use std::path::Path;

use anyhow::anyhow;
use weft_engine::vault::KeyLocation;

use crate::{CliError, CmdResult, exit};

const PROJECT: &str = r#"# Project settings and named connections. See the README for every key.
name: my-project

# Constants every workflow reads as .vars.
vars:
  greeting: Hello

# Connections to outside systems, used by steps as `uses: <name>.<action>`.
# Credentials are never written here: they come from the encrypted secret store
# (`weft secrets set NAME`, then { secret: NAME }) or from the environment ({ env: NAME }).
connections: {}
#  shop:
#    type: http
#    base_url: https://shop.example.com/api
#    auth: { type: bearer, token: { secret: SHOP_TOKEN } }
"#;

const WORKFLOW: &str = r#"# Run it with: weft run hello --input '{"name": "Ada"}'
description: Greets someone, louder when asked, once per friend.
trigger: manual
steps:
  - id: greeting
    map: ${{ "\(.vars.greeting), \(.input.name // "world")!" }}
  - id: shout
    if: ${{ .input.loud == true }}
    map: ${{ .steps.greeting | ascii_upcase }}
  - id: friends
    for_each: ${{ .input.friends // [] }}
    steps:
      - id: friend
        map: ${{ "\(.vars.greeting), \(.item)!" }}
output: ${{ {greeting: (.steps.shout // .steps.greeting), friends: .steps.friends} }}
"#;

const TEST: &str = r#"# Run with: weft test
workflow: hello
cases:
  - name: greets by name
    input: { name: Ada }
    expect:
      output_equals: { greeting: "Hello, Ada!", friends: [] }
  - name: shouts when asked and greets every friend
    input: { name: Ada, loud: true, friends: [Grace, Alan] }
    expect:
      output: '.greeting == "HELLO, ADA!" and .friends == ["Hello, Grace!", "Hello, Alan!"]'
      steps:
        shout: { ran: true }
"#;

const GITIGNORE: &str = "# Run data of the embedded store.\n.weft/\n";

pub(crate) fn init(dir: &Path) -> CmdResult {
    if dir.join("weft.yaml").exists() {
        return Err(CliError::usage(anyhow!(
            "{} already holds a Weft project (weft.yaml exists); nothing was changed",
            dir.display()
        )));
    }
    let files = [
        ("weft.yaml", PROJECT),
        ("workflows/hello.yaml", WORKFLOW),
        ("tests/hello.yaml", TEST),
        (".gitignore", GITIGNORE),
    ];
    for (name, _) in &files {
        if dir.join(name).exists() {
            return Err(CliError::usage(anyhow!(
                "{} already exists; nothing was changed",
                dir.join(name).display()
            )));
        }
    }
    for (name, text) in &files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                CliError::internal(anyhow!("cannot create {}: {e}", parent.display()))
            })?;
        }
        std::fs::write(&path, text)
            .map_err(|e| CliError::internal(anyhow!("cannot write {}: {e}", path.display())))?;
    }
    // The secret store's master key, unless one comes from the environment.
    let location = KeyLocation::from_env(&dir.join(weft_engine::project_dir::DATA_DIR));
    if location.env.is_none() && !location.file.exists() {
        location
            .create_file()
            .map_err(|e| CliError::internal(anyhow!("{e}")))?;
    }
    let shown = dir.display();
    let key = match &location.env {
        Some(_) => "from WEFT_MASTER_KEY".to_string(),
        None => format!("in {}", location.file.display()),
    };
    eprintln!(
        "Created a Weft project in {shown}; the secret store's master key is {key} (keep a copy apart from the database). Next:"
    );
    eprintln!("  weft lint {shown}");
    eprintln!("  weft test {shown}");
    eprintln!("  weft run hello --project {shown} --input '{{\"name\": \"Ada\"}}'");
    Ok(exit::OK)
}
