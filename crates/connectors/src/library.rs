//! The built-in library of connector definitions (`crates/connectors/library/*.yaml`): named
//! business apps, written as data like a project's `connectors/` files and compiled into the
//! binary. Each is read once, when the catalog is first built; a definition with a problem is a
//! bug of this build, which the tests catch.

use weft_core::Diagnostics;
use weft_core::definition::{self, Definition};

/// The library's files: name and text.
pub const FILES: &[(&str, &str)] = &[
    ("github.yaml", include_str!("../library/github.yaml")),
    (
        "google_sheets.yaml",
        include_str!("../library/google_sheets.yaml"),
    ),
    ("hubspot.yaml", include_str!("../library/hubspot.yaml")),
    ("intercom.yaml", include_str!("../library/intercom.yaml")),
    ("mailchimp.yaml", include_str!("../library/mailchimp.yaml")),
    (
        "salesforce.yaml",
        include_str!("../library/salesforce.yaml"),
    ),
    ("shopify.yaml", include_str!("../library/shopify.yaml")),
    ("slack.yaml", include_str!("../library/slack.yaml")),
    ("stripe.yaml", include_str!("../library/stripe.yaml")),
    ("zendesk.yaml", include_str!("../library/zendesk.yaml")),
];

/// Reads one library file, or says what is wrong with it.
pub fn read(file: &str, text: &str) -> Result<Definition, Vec<String>> {
    let node = weft_core::yaml::parse(text).map_err(|e| vec![format!("{file}: {e:?}")])?;
    let mut diags = Diagnostics::new(format!("library/{file}"));
    match definition::decode(&node, &mut diags) {
        Some(def) if diags.is_empty() => Ok(def),
        _ => Err(diags.into_vec().iter().map(|d| d.to_string()).collect()),
    }
}

/// Every definition of the library that reads without problems.
pub fn definitions() -> Vec<Definition> {
    FILES
        .iter()
        .filter_map(|(file, text)| read(file, text).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_definition_reads_without_problems_and_names_its_file() {
        for (file, text) in FILES {
            let def = read(file, text).unwrap_or_else(|problems| panic!("{problems:#?}"));
            assert_eq!(format!("{}.yaml", def.type_name), *file);
            for action in &def.actions {
                assert!(
                    action.docs.is_some(),
                    "{}.{} links its documentation",
                    def.type_name,
                    action.name
                );
            }
        }
        assert_eq!(definitions().len(), FILES.len());
    }

    #[test]
    fn every_library_trigger_lints_in_a_workflow_that_uses_it() {
        use weft_core::{Project, Sources};
        let catalog = crate::catalog();
        for def in definitions() {
            for trigger in &def.triggers {
                let auth = match def.auth.first().map(String::as_str) {
                    Some("api_key") => "{type: api_key, value: {env: T}}",
                    Some("basic") => "{type: basic, username: u, password: {env: T}}",
                    _ => "{type: bearer, token: {env: T}}",
                };
                let mut connection = format!(
                    "{{type: {}, webhook_secret: {{secret: HOOK}}, auth: {auth}",
                    def.type_name
                );
                for v in def.variables.iter().filter(|v| v.default.is_none()) {
                    connection.push_str(&format!(", {}: x", v.name));
                }
                connection.push('}');
                let mut sources =
                    Sources::new("weft.yaml", format!("connections:\n  app: {connection}\n"));
                sources.add_workflow(
                    "workflows/w.yaml",
                    format!(
                        "trigger:\n  {}: {{ uses: app.{} }}\nsteps:\n  - id: s\n    map: {{ a: 1 }}\n",
                        trigger.kind.name(),
                        trigger.name
                    ),
                );
                if let Err(problems) = Project::load(&sources, &catalog) {
                    panic!(
                        "{}.{}: {:#?}",
                        def.type_name,
                        trigger.name,
                        problems.iter().map(|d| d.to_string()).collect::<Vec<_>>()
                    );
                }
            }
        }
    }

    #[test]
    fn an_oauth_connection_of_the_library_needs_only_its_client() {
        use weft_core::{Project, Sources};
        let sources = Sources::new(
            "weft.yaml",
            "connections:\n  crm:\n    type: hubspot\n    auth: { type: oauth2, client_id: abc, client_secret: { secret: HUBSPOT_CLIENT_SECRET }, scope: crm.objects.contacts.read }\n",
        );
        let project = Project::load(&sources, &crate::catalog()).unwrap_or_else(|p| {
            panic!("{:?}", p.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        });
        let built =
            crate::Registry::build(&project, std::path::Path::new("."), &crate::Secrets::new())
                .unwrap_or_else(|e| panic!("{e}"));
        let sign_in = built.get("crm").unwrap().sign_in().expect("it signs in");
        let url = sign_in.authorize_url("http://127.0.0.1:7807/oauth/callback", "st", "ch");
        assert!(
            url.starts_with(
                "https://app.hubspot.com/oauth/authorize?response_type=code&client_id=abc"
            ),
            "{url}"
        );
    }
}
