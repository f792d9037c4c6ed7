//! Vendor webhook subscriptions: a workflow whose webhook trigger `uses:` a connector trigger with a
//! `subscribe` (see [`weft_core::definition::Subscription`]) is registered with the vendor when the
//! hub serves it, and removed when the workflow goes (or stops using it), by calling the
//! connector's own actions.
//!
//! The address the vendor calls is `WEFT_PUBLIC_URL` + `/hooks/<path>`: without that variable the
//! hub cannot know where the vendor reaches it, so it registers nothing and says so in the log.
//! What is registered is kept in the store (conversation state, namespace `weft.webhooks`), so a
//! restart neither registers twice nor forgets what to remove. A failed registration is logged and
//! audited, and tried again at the next start or reload.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use weft_core::Diagnostics;
use weft_core::expr::{Budget, EvalLimits, Template, json_to_val, val_to_json};
use weft_core::trigger::Trigger;
use weft_store::now_millis;

use crate::{Hub, audit};

/// The store namespace of registered subscriptions.
const NAMESPACE: &str = "weft.webhooks";
/// The key that lists the workflows with a registered subscription.
const INDEX: &str = "_index";
/// Largest output a subscribe call may return.
const MAX_OUTPUT: u64 = 1 << 20;

/// A subscription as wanted now or as registered: which connection's trigger, at which address.
#[derive(Clone, Debug, PartialEq)]
struct Wanted {
    connection: String,
    trigger: String,
    url: String,
}

fn evaluate(with: &weft_core::yaml::Node, context: Value) -> Result<Value, String> {
    let mut diags = Diagnostics::new("subscription");
    let template = Template::from_node(with, &mut diags);
    if !diags.is_empty() {
        return Err(format!("its `with` does not read: {:?}", diags.into_vec()));
    }
    let budget = Budget::new(EvalLimits::default(), None);
    let value = template
        .eval(&json_to_val(&context), &budget)
        .map_err(|e| e.message)?;
    val_to_json(&value)
}

/// One sync at a time (a start and a reload may overlap).
static SYNCING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Registers what the served project wants and removes what it no longer does.
pub async fn sync(hub: &Hub) {
    let _one = SYNCING.lock().await;
    let project = hub.engine.project();
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    let public = std::env::var("WEFT_PUBLIC_URL").ok();
    for workflow in project.workflows.values() {
        let Trigger::Webhook(hook) = &workflow.trigger else {
            continue;
        };
        let Some((connection, trigger)) = hook.uses.as_deref().and_then(|u| u.split_once('.'))
        else {
            continue;
        };
        let has_subscribe = project
            .connections
            .get(connection)
            .and_then(|c| match project.catalog.get(&c.type_name) {
                Some(weft_core::Spec::Defined(d)) => d.trigger(trigger).cloned(),
                _ => None,
            })
            .is_some_and(|t| t.subscription.is_some());
        if !has_subscribe {
            continue;
        }
        let Some(public) = &public else {
            tracing::warn!(
                workflow = %workflow.name,
                "{}.{} can be registered with the vendor, but WEFT_PUBLIC_URL (the address the vendor reaches this hub at) is not set; register /hooks/{} in the vendor's settings yourself",
                connection,
                trigger,
                hook.path
            );
            continue;
        };
        wanted.insert(
            workflow.name.clone(),
            Wanted {
                connection: connection.to_string(),
                trigger: trigger.to_string(),
                url: format!("{}/hooks/{}", public.trim_end_matches('/'), hook.path),
            },
        );
    }
    let store = hub.engine.store();
    let now = now_millis();
    let index: Vec<String> = match store.state_get(NAMESPACE, INDEX, now).await {
        Ok(Some(v)) => serde_json::from_value(v).unwrap_or_default(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::error!("cannot read the registered webhooks: {e}");
            return;
        }
    };
    let mut kept: Vec<String> = Vec::new();
    // Remove what is registered and no longer wanted (or wanted differently).
    for workflow in &index {
        let record = match store.state_get(NAMESPACE, workflow, now).await {
            Ok(Some(r)) => r,
            _ => continue,
        };
        let registered = Wanted {
            connection: record["connection"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            trigger: record["trigger"].as_str().unwrap_or_default().to_string(),
            url: record["url"].as_str().unwrap_or_default().to_string(),
        };
        if wanted.get(workflow) == Some(&registered) {
            kept.push(workflow.clone());
            continue;
        }
        match unsubscribe(hub, workflow, &registered, &record["id"]).await {
            Ok(()) => {
                let _ = store.state_delete(NAMESPACE, workflow, now).await;
            }
            Err(e) => {
                tracing::warn!(
                    workflow,
                    "the webhook registered for it could not be removed: {e}; remove it in the vendor's settings"
                );
                let _ = store.state_delete(NAMESPACE, workflow, now).await;
            }
        }
    }
    for (workflow, want) in &wanted {
        if kept.contains(workflow) {
            continue;
        }
        match subscribe(hub, workflow, want).await {
            Ok(id) => {
                let record = json!({"connection": want.connection, "trigger": want.trigger, "url": want.url, "id": id});
                if let Err(e) = store
                    .state_set(NAMESPACE, workflow, &record, None, now)
                    .await
                {
                    tracing::error!(
                        workflow,
                        "the webhook was registered (id {id}) but cannot be recorded: {e}"
                    );
                    continue;
                }
                kept.push(workflow.clone());
                // The index at once, so that a hub stopped now knows this one at its next start;
                // audited once it is recorded.
                write_index(store.as_ref(), &mut kept).await;
                audit::record(
                    store.as_ref(),
                    "system",
                    "webhook.subscribe",
                    workflow,
                    record,
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(
                    workflow,
                    "the webhook could not be registered with the vendor: {e}; it is tried again at the next start or reload"
                );
            }
        }
    }
    write_index(store.as_ref(), &mut kept).await;
}

/// Records which workflows have a registered webhook.
async fn write_index(store: &dyn weft_store::Store, kept: &mut Vec<String>) {
    kept.sort();
    kept.dedup();
    if let Err(e) = store
        .state_set(NAMESPACE, INDEX, &json!(kept), None, now_millis())
        .await
    {
        tracing::error!("cannot record the registered webhooks: {e}");
    }
}

fn subscription_of(hub: &Hub, want: &Wanted) -> Option<weft_core::definition::Subscription> {
    let project = hub.engine.project();
    let connection = project.connections.get(&want.connection)?;
    match project.catalog.get(&connection.type_name)? {
        weft_core::Spec::Defined(d) => d.trigger(&want.trigger)?.subscription.clone(),
        _ => None,
    }
}

async fn subscribe(hub: &Hub, workflow: &str, want: &Wanted) -> Result<Value, String> {
    let subscription =
        subscription_of(hub, want).ok_or("its connector no longer says how to register it")?;
    let connector = hub
        .engine
        .connector(&want.connection)
        .ok_or_else(|| format!("there is no connection `{}`", want.connection))?;
    let input = evaluate(
        &subscription.subscribe.with,
        json!({"url": want.url, "workflow": workflow}),
    )?;
    let key = format!("subscribe/{workflow}");
    let output = connector
        .call(weft_connectors::Call {
            action: &subscription.subscribe.action,
            input,
            idempotency_key: &key,
            max_output_bytes: MAX_OUTPUT,
        })
        .await
        .map_err(|e| e.to_string())?;
    let id = output
        .pointer(&subscription.id)
        .cloned()
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("the vendor's answer has no id at `{}`", subscription.id))?;
    tracing::info!(workflow, url = %want.url, "registered the webhook with the vendor");
    Ok(id)
}

async fn unsubscribe(
    hub: &Hub,
    workflow: &str,
    registered: &Wanted,
    id: &Value,
) -> Result<(), String> {
    let subscription = subscription_of(hub, registered)
        .ok_or("its connection or connector is gone, so the hub cannot remove it")?;
    let Some(call) = subscription.unsubscribe else {
        return Err("its connector has no way to remove it".into());
    };
    let connector = hub
        .engine
        .connector(&registered.connection)
        .ok_or_else(|| format!("there is no connection `{}`", registered.connection))?;
    let input = evaluate(
        &call.with,
        json!({"id": id, "url": registered.url, "workflow": workflow}),
    )?;
    let key = format!("unsubscribe/{workflow}");
    connector
        .call(weft_connectors::Call {
            action: &call.action,
            input,
            idempotency_key: &key,
            max_output_bytes: MAX_OUTPUT,
        })
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(workflow, url = %registered.url, "removed the webhook registered with the vendor");
    audit::record(
        hub.engine.store().as_ref(),
        "system",
        "webhook.unsubscribe",
        workflow,
        json!({"connection": registered.connection, "trigger": registered.trigger, "url": registered.url, "id": id}),
    )
    .await;
    Ok(())
}
